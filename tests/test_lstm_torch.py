"""Eq. 1 sequence forward and BPTT against torch autograd on the same float64 weights."""

import numpy as np
import pytest

from minicnnrnn.rnn import lstm


def torch_eq1(torch, w_seq, mask, U_r, U_w, b, variant):
    """Eq. 1 over a masked sequence, written in torch so autograd differentiates it."""
    T, N, _ = w_seq.shape
    H = U_r.shape[0]
    r = torch.zeros(N, H, dtype=torch.float64)
    outs = []
    for t in range(T):
        z = r @ U_r + w_seq[t] @ U_w + b
        x, i, f, o = z.split(H, dim=1)
        if variant == "relu":
            x, i, f, o = (torch.relu(a) for a in (x, i, f, o))
        elif variant == "bounded":
            x, i, f, o = (torch.clamp(a, 0, 1) for a in (x, i, f, o))
        else:
            x, i, f, o = torch.tanh(x), torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
        m = mask[t].unsqueeze(1)
        r = m * (f * r + i * x) + (1 - m) * r
        outs.append(m * (torch.tanh(r) if variant == "conventional" else r) * o)
    return torch.stack(outs)


def rel(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


@pytest.mark.parametrize("variant", lstm.VARIANTS)
def test_sequence_matches_torch_autograd(torch, variant):
    rng = np.random.default_rng(0)
    T, N, E, H = 5, 4, 6, 7
    arrays = {
        "w_seq": rng.standard_normal((T, N, E)),
        "U_r": rng.standard_normal((H, 4 * H)) / np.sqrt(H),
        "U_w": rng.standard_normal((E, 4 * H)) / np.sqrt(E),
        "b_lstm": 0.3 + 0.3 * rng.standard_normal(4 * H),
    }
    mask = (np.arange(T)[:, None] < np.array([5, 3, 1, 4])[None, :]).astype(np.float64)
    G = rng.standard_normal((T, N, H))

    o, cache = lstm.lstm_forward(arrays["w_seq"], mask, {k: arrays[k] for k in ("U_r", "U_w", "b_lstm")}, variant)
    dw_seq, grads = lstm.lstm_backward(G, cache)
    ours = dict(grads, w_seq=dw_seq)

    t = {k: torch.tensor(v, requires_grad=True) for k, v in arrays.items()}
    o_torch = torch_eq1(torch, t["w_seq"], torch.tensor(mask), t["U_r"], t["U_w"], t["b_lstm"], variant)
    (o_torch * torch.tensor(G)).sum().backward()

    assert rel(o, o_torch.detach().numpy()) <= 1e-10
    for k in arrays:
        assert rel(ours[k], t[k].grad.numpy()) <= 1e-10, k
