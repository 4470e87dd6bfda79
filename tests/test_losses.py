import torch
import torch.nn.functional as F

from coach.optim import penalty
from coach.train.losses import make_loss, mixed, svm_hinge


def test_svm_matches_lecture_formula_and_torch():
    scores = torch.tensor([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])  # CS231n lecture 3 example
    y = torch.tensor([0, 1, 2])
    assert torch.allclose(svm_hinge(scores, y), torch.tensor((2.9 + 0.0 + 12.9) / 3))
    s = torch.randn(8, 5)
    t = torch.randint(0, 5, (8,))
    assert torch.allclose(svm_hinge(s, t), F.multi_margin_loss(s, t) * 5)


def test_cross_entropy_with_smoothing():
    s, t = torch.randn(8, 5), torch.randint(0, 5, (8,))
    assert torch.allclose(make_loss("cross_entropy", 0.1)(s, t), F.cross_entropy(s, t, label_smoothing=0.1))
    assert torch.allclose(make_loss("cross_entropy")(torch.zeros(4, 10), t[:4]), torch.tensor(2.302585), atol=1e-5)


def test_mixed_loss():
    s, a, b = torch.randn(8, 5), torch.randint(0, 5, (8,)), torch.randint(0, 5, (8,))
    ce = make_loss("cross_entropy")
    assert torch.allclose(mixed(ce, s, a, b, 0.3), 0.3 * ce(s, a) + 0.7 * ce(s, b))


def test_penalties_closed_form():
    w = [torch.nn.Parameter(torch.tensor([[1.0, -2.0]])), torch.nn.Parameter(torch.tensor([[3.0]]))]
    assert abs(penalty(w, l2=0.1).item() - 0.5 * 0.1 * 14) < 1e-6
    assert abs(penalty(w, l1=0.1).item() - 0.1 * 6) < 1e-6
    total = penalty(w, l1=0.1, l2=0.1)
    assert abs(total.item() - (0.7 + 0.6)) < 1e-6  # elastic net
    total.backward()
    assert torch.allclose(w[0].grad, 0.1 * w[0].detach() + 0.1 * torch.sign(w[0].detach()))
    assert penalty(w) is None
