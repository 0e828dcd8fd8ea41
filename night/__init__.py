"""The night cycle ("the Twin Dream"): curate, train, merge, requantize, gate, deploy.

One module per step: ``transcripts`` (past conversations into a ledger),
``redact``, ``curate``, ``train`` (LoRA), ``merge`` (TIES with mergekit; Orai's
FP16 fuse), ``gate``, ``lineage`` (promote, reject, roll back), ``plot``;
``dream`` runs them in order, recorded in the image and resumable.
"""
