"""Markdown tables from evaluation results (the README's tables come from here)."""

from __future__ import annotations


def format_table(results: dict[str, dict]) -> str:
    """`results`: {"teacher": {...}, "<width>": {...}} as written by `split-perception eval`."""
    lines = ["| model | width | bytes/frame (mean) | bytes p95 | onboard encode ms | offboard decode+heads ms "
             "| mAP@[.5:.95] | mAP@.5 | mIoU |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        if key == "teacher":
            lines.append(f"| teacher (uncompressed input) | - | - | - | - | - | {100 * r['map']:.1f} "
                         f"| {100 * r['map50']:.1f} | {100 * r['miou']:.1f} |")
        else:
            lines.append(f"| split student | {float(key):.2f} | {r['bytes_mean']:.0f} | {r['bytes_p95']:.0f} "
                         f"| {r['encode_ms']:.1f} | {r['decode_ms']:.1f} | {100 * r['map']:.1f} "
                         f"| {100 * r['map50']:.1f} | {100 * r['miou']:.1f} |")
    return "\n".join(lines)
