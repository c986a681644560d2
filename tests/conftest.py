"""Suite-wide test settings.

Tiny models on a 2-core machine run faster on one thread: the matrices are too small for
intra-op parallelism to pay for its synchronisation, and on a shared machine a second
thread mostly waits. Subprocesses (CLI tests) inherit the setting through the environment.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
