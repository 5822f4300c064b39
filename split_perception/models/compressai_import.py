"""CompressAI's model, latent codec and entropy model classes, imported without an import-time warning that is
not ours.

`import compressai` runs its package `__init__`, which imports its point-cloud data sets and, through
them, torch_geometric; every torch_geometric release from 2.4 to 2.8.1 calls `torch.jit.script` at import
time, which torch 2.14 deprecates with a FutureWarning on every process start. Nothing here uses
torch_geometric, so that one warning is ignored for this import only; the process's warning filters stay
as they were. Every module of ours that needs CompressAI imports it from here.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
    from compressai.ans import RansDecoder, RansEncoder
    from compressai.entropy_models import EntropyBottleneck
    from compressai.entropy_models.entropy_models import pmf_to_quantized_cdf
    from compressai.latent_codecs import LatentCodec
    from compressai.models import CompressionModel
    from compressai.models.utils import update_registered_buffers

__all__ = ["CompressionModel", "EntropyBottleneck", "LatentCodec", "RansDecoder", "RansEncoder", "pmf_to_quantized_cdf",
           "update_registered_buffers"]
