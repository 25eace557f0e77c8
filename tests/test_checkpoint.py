import pytest
import torch

from tensorpoly_tn import TensorPolyConfig, apply_adapters
from tensorpoly_tn.experiments.multitask import CHECKPOINT_NAME, load_checkpoint, save_checkpoint, train_multitask
from tensorpoly_tn.models import load_model_and_tokenizer
from tensorpoly_tn.skills import SkillsBenchmark
from tensorpoly_tn.training import TrainingConfig

CONFIG = TrainingConfig(steps=6, batch_size=4, lr=1e-2, seed=3)


def _setup():
    model, tokenizer = load_model_and_tokenizer(preset="tiny")
    bench = SkillsBenchmark()
    torch.manual_seed(0)
    apply_adapters(model, TensorPolyConfig(method="poly", n_tasks=bench.n_tasks, n_skills=3, rank=2))
    examples = [e for t in bench.train_tasks[:3] for e in bench.examples(t, 4)]
    return model, tokenizer, examples


def test_resumed_run_matches_uninterrupted(tmp_path):
    model, tokenizer, examples = _setup()
    reference = train_multitask(model, tokenizer, examples, CONFIG, progress=False)
    final = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    model, tokenizer, examples = _setup()
    first = train_multitask(model, tokenizer, examples, CONFIG, tmp_path, checkpoint_every=2, stop_after=3,
                            progress=False)
    assert len(first) == 3
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["step"] == 2

    model, tokenizer, examples = _setup()  # a fresh process: new model, state read from disk
    resumed = train_multitask(model, tokenizer, examples, CONFIG, tmp_path, checkpoint_every=2, progress=False)
    assert resumed == pytest.approx(reference, rel=1e-5)
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            torch.testing.assert_close(parameter, final[name], rtol=1e-5, atol=1e-6)
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["step"] == CONFIG.steps


def test_failed_write_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint(path, {"step": 1, "losses": [], "trainable": {}, "optimizer": {}, "rng": torch.get_rng_state()})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        save_checkpoint(path, {"step": 2, "payload": Unpicklable()})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]


def test_load_rejects_foreign_file(tmp_path):
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"is not a multitask checkpoint: it lacks the keys \['step'"):
        load_checkpoint(tmp_path / "other.pt")
