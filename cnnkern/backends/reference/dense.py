"""Reference dense: x (N,in), w (out,in), b (out,) -> y (N,out)."""


def dense_forward(x, w, b=None):
    y = x @ w.T
    if b is not None:
        y += b
    return y


def dense_backward(dy, x, w, *, need_dx, need_db):
    dx = dy @ w if need_dx else None
    dw = dy.T @ x
    db = dy.sum(axis=0) if need_db else None
    return dx, dw, db
