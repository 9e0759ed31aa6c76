"""The exercise checks accept the solutions, reject plausible mistakes, and never raise."""
import pytest
import torch

from course_lib import exercises as ex


def patchify(images, p):
    B, C, H, W = images.shape
    x = images.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (H // p) * (W // p), C * p * p)


def patchify_channels_last(images, p):          # flattens (row, column, channel): the wrong order
    B, C, H, W = images.shape
    x = images.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(B, (H // p) * (W // p), C * p * p)


def test_patchify(capsys):
    assert ex.check_patchify(patchify)
    assert not ex.check_patchify(patchify_channels_last)
    assert "not in the right order" in capsys.readouterr().out
    assert not ex.check_patchify(lambda x, p: x.flatten(1))


def test_unattempted_and_crashing_answers_do_not_raise(capsys):
    assert not ex.check_patchify(lambda x, p: None)
    assert "not attempted" in capsys.readouterr().out
    assert not ex.check_drloc_targets(lambda a, b, k: 1 / 0)
    assert "ZeroDivisionError" in capsys.readouterr().out
    # the checks that call the function once per input (stages, grid sizes)
    assert not ex.check_receptive_field(lambda stage: None)
    assert "not attempted" in capsys.readouterr().out
    assert not ex.check_expected_target(lambda k: [][k])
    assert "IndexError" in capsys.readouterr().out


def test_receptive_field():
    theory = {"stem": 3, "layer1": 11, "layer2": 25, "layer3": 53, "layer4": 109}
    assert ex.empirical_receptive_fields() == theory      # the gradient measurement agrees with the formula
    assert ex.check_receptive_field(theory.get)
    assert not ex.check_receptive_field({**theory, "layer4": 61}.get)


def test_rollout_step():
    def solution(a):
        fused = a.mean(1) + torch.eye(a.shape[-1])
        return fused / fused.sum(-1, keepdim=True)

    assert ex.check_rollout_step(solution)
    assert not ex.check_rollout_step(lambda a: a.mean(1))                           # forgot the residual
    assert not ex.check_rollout_step(lambda a: a.mean(1) + torch.eye(a.shape[-1]))  # forgot to re-normalise


def test_cka_and_hsic():
    def cka(X, Y):
        n = X.shape[0]
        H = torch.eye(n, dtype=X.dtype) - 1.0 / n
        K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
        return (K * L).sum() / (K.norm() * L.norm())

    def cka_uncentred(X, Y):
        K, L = X @ X.T, Y @ Y.T
        return (K * L).sum() / (K.norm() * L.norm())

    assert ex.check_linear_cka(cka)
    assert not ex.check_linear_cka(cka_uncentred)

    def hsic(K, L, keep_diagonal=False):
        n = K.shape[0]
        if not keep_diagonal:
            K, L = K - torch.diag(torch.diag(K)), L - torch.diag(torch.diag(L))
        one = torch.ones(n, dtype=K.dtype)
        return (torch.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
                - 2.0 / (n - 2) * (one @ K @ L @ one)) / (n * (n - 3))

    assert ex.check_hsic_unbiased(hsic)
    assert not ex.check_hsic_unbiased(lambda K, L: hsic(K, L, keep_diagonal=True))


def test_drloc_targets(capsys):
    assert ex.check_drloc_targets(lambda a, b, k: (a - b).abs().float() / k)
    assert not ex.check_drloc_targets(lambda a, b, k: (a - b).abs().float() / (k - 1))
    assert not ex.check_drloc_targets(lambda a, b, k: (a - b).abs() // k)
    assert "integer division" in capsys.readouterr().out


def test_expected_target():
    assert ex.check_expected_target(lambda k: (k * k - 1) / (3 * k * k))
    assert not ex.check_expected_target(lambda k: 1 / 3)                  # the continuous limit is not exact
    assert not ex.check_expected_target(lambda k: (k * k - 1) / (3 * k))  # forgot to divide by k


def test_expected_target_accepts_a_float32_answer_and_shows_the_difference(capsys):
    def float32(k):
        k = torch.tensor(k, dtype=torch.float32)
        return (k ** 2 - 1) / (3 * k ** 2)

    assert ex.check_expected_target(float32)
    assert not ex.check_expected_target(lambda k: (k * k - 1) / (3 * k * k) + 1e-5)
    assert "you said 0.250010000, enumerating all pairs gives 0.250000000" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------------------------
# Answers that are NaN, or not the kind of value asked for: wrong, with a message, never a crash

NAN = float("nan")


@pytest.mark.parametrize("check,answer", [
    (ex.check_patchify, lambda images, p: torch.full((3, 16, 48), NAN)),
    (ex.check_rollout_step, lambda a: torch.full((2, 5, 5), NAN)),
    (ex.check_rollout_discard, lambda a, r: torch.full((2, 10, 10), NAN)),
    (ex.check_linear_cka, lambda X, Y: NAN),
    (ex.check_hsic_unbiased, lambda K, L: torch.tensor(float("inf"))),
    (ex.check_drloc_targets, lambda a, b, k: torch.full((3, 16, 2), NAN)),
    (ex.check_expected_target, lambda k: NAN),
    (ex.check_receptive_field, lambda stage: NAN),
])
def test_a_nan_answer_is_wrong_and_says_why(capsys, check, answer):
    """NaN > tolerance is False: a check that only compares the error with the tolerance calls NaN correct."""
    assert not check(answer)
    out = capsys.readouterr().out
    assert "✗" in out and "NaN or infinite" in out and "division by zero" in out and "correct!" not in out


@pytest.mark.parametrize("check,answer,message", [
    (ex.check_hsic_unbiased, lambda K, L: torch.tensor([1.0, 2.0]), "one number, got a tensor of shape (2,)"),
    (ex.check_receptive_field, lambda stage: torch.tensor([3, 3]), "one number, got a tensor of shape (2,)"),
    (ex.check_linear_cka, lambda X, Y: "0.9", "one number (a float or a 0-d tensor), got str"),
    (ex.check_expected_target, lambda k: [k], "one number (a float or a 0-d tensor), got list"),
    (ex.check_rollout_step, lambda a: a.mean(1).to("meta"), "could not be checked"),
])
def test_an_answer_of_the_wrong_kind_is_wrong_not_a_crash(capsys, check, answer, message):
    assert not check(answer)
    assert message in capsys.readouterr().out


def test_one_element_tensors_and_numpy_numbers_are_numbers():
    import numpy as np

    theory = {"stem": 3, "layer1": 11, "layer2": 25, "layer3": 53, "layer4": 109}
    assert ex.check_receptive_field(lambda stage: torch.tensor(theory[stage]))
    assert ex.check_expected_target(lambda k: np.float64((k * k - 1) / (3 * k * k)))


def test_the_exercises_one_step_beyond_the_notebooks_cells():
    """RBF CKA (04) and signed DRLoc targets (05): right answers pass, wrong and NaN fail."""
    from course_lib.cka import rbf_cka

    assert ex.check_rbf_cka(lambda X, Y, sigma: rbf_cka(X, Y, sigma=sigma))      # the library agrees
    assert not ex.check_rbf_cka(lambda X, Y, sigma: rbf_cka(X, Y, sigma=2 * sigma))
    assert not ex.check_rbf_cka(lambda X, Y, sigma: float("nan"))
    assert ex.check_signed_targets(lambda p1, p2, k: ((p1 - p2) + (k - 1)).float() / (2 * (k - 1)))
    assert not ex.check_signed_targets(lambda p1, p2, k: (p1 - p2).abs().float() / k)


# ----------------------------------------------------------------------------------------------------------------
# Notebook 02: rollout with vit-explain's discard ratio

def rollout_discard(attentions, ratio, spare="cls", per_row=False, renormalise=True, spared_first=False,
                    discard=True):
    """A learner's vectorised answer in float32 (keywords: the usual mistakes)."""
    B, _, T, _ = attentions[0].shape
    eye = torch.eye(T, dtype=attentions[0].dtype)
    R = eye.expand(B, T, T)
    for attention in attentions:
        A = attention.mean(dim=1)
        if discard:
            spared = torch.zeros(T, T, dtype=torch.bool)
            if spare == "cls":
                spared[0, 0] = True
            elif spare == "cls row and column":
                spared[0, :] = spared[:, 0] = True
            flat, keep_out = (A, spared) if per_row else (A.flatten(1), spared.flatten())
            n = int(flat.shape[-1] * ratio)
            scores = flat.masked_fill(keep_out, float("inf")) if spared_first else flat
            drop = torch.zeros_like(flat, dtype=torch.bool).scatter(-1, scores.argsort(-1)[..., :n], True)
            A = flat.masked_fill(drop & ~keep_out, 0.0).view(B, T, T)
        A = A + eye
        R = (A / A.sum(dim=-1, keepdim=True) if renormalise else A) @ R
    return R


def test_rollout_discard_accepts_float32_answers_and_the_library():
    from course_lib.rollout import rollout_matrices

    assert ex.check_rollout_discard(rollout_discard)
    assert ex.check_rollout_discard(lambda a, r: rollout_discard([x.double() for x in a], r))
    assert ex.check_rollout_discard(lambda a, r: rollout_matrices(a, discard_ratio=r)[-1])   # topk, not sorting


def test_rollout_discard_inputs_leave_no_near_tie_at_the_cut():
    """float32 and float64 answers zero the same entries only if the n-th and (n+1)-th smallest fused entries are
    well apart: the check's inputs are chosen so."""
    for attention in ex.discard_inputs():
        fused = attention.double().mean(1).flatten(1).sort(dim=1).values      # (B, T*T)
        for ratio in ex.DISCARD_RATIOS[1:]:
            n = int(fused.shape[1] * ratio)
            assert (fused[:, n] - fused[:, n - 1]).min() > 1e-6


@pytest.mark.parametrize("mistake,message", [
    (dict(spare="none"), "zeroed (0, 0) too"),
    (dict(spare="cls row and column"), "spared the whole class-token row and column"),
    (dict(per_row=True), "lowest entries of each row"),
    (dict(renormalise=False), "rows do not sum to 1"),
    (dict(spared_first=True), "one more entry where (0, 0) was among the lowest"),
    (dict(discard=False), "nothing was discarded"),
])
def test_rollout_discard_names_the_mistake(capsys, mistake, message):
    assert not ex.check_rollout_discard(lambda a, r: rollout_discard(a, r, **mistake))
    out = capsys.readouterr().out
    assert "✗" in out and message in out, out


def test_rollout_discard_wrong_shape_and_errors(capsys):
    assert not ex.check_rollout_discard(lambda a, r: rollout_discard(a, r)[:, 0, 1:].reshape(2, 3, 3))
    assert "shape (2, 3, 3), expected (2, 10, 10)" in capsys.readouterr().out
    assert not ex.check_rollout_discard(lambda a, r: None)
    assert "not attempted" in capsys.readouterr().out
    assert not ex.check_rollout_discard(lambda a, r: [][0])
    assert "IndexError" in capsys.readouterr().out
