"""Thread settings for torch: small models run faster on one intra-op thread."""

import contextlib

import torch


@contextlib.contextmanager
def one_thread():
    """Run torch on one intra-op thread inside the block. Small tensor operations (low-dimensional models,
    many tiny steps) only contend for a second thread: ~4x slower fits, and far worse on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
