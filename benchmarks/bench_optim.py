"""One optimizer step over all of the classic CNN's parameters (10 tensors, 93,322 values): Adam (PyTorch's
form, lr 1e-3) and SGD with momentum 0.9, one kernel call per parameter tensor; PyTorch's peer is
torch.optim.Adam / torch.optim.SGD with their CPU defaults. Memory-bound: compare the GB/s in extra_info."""

from cnnkern.bench import shapes, workloads

PARAMS = shapes.Params("classic", shapes.CLASSIC_PARAM_SHAPES)


def test_adam_update(measure):
    measure(workloads.AdamStep(PARAMS))


def test_sgd_update(measure):
    measure(workloads.SgdStep(PARAMS))
