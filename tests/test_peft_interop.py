"""Against PEFT (a dev dependency): Poly and MHR equal PEFT's poly tuner; exported LoRA loads in PEFT."""

import copy
import json

import pytest
import torch
from tiny_models import tiny_t5

from tensorpoly_tn import METHODS, TensorPolyConfig, adapter_layers, apply_adapters, export_peft_lora, use_tasks

peft = pytest.importorskip("peft")

TARGETS = (r".*\.(SelfAttention|EncDecAttention)\.(q|k|v|o)", r".*\.DenseReluDense\.(wi_0|wi_1|wo)")
PEFT_TARGETS = r".*\.((SelfAttention|EncDecAttention)\.(q|k|v|o)|DenseReluDense\.(wi_0|wi_1|wo))"


def _tiny_t5(seed=0):
    return tiny_t5(seed)


def _randomise(model, seed=5):
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.normal_(0.0, 0.5)


@pytest.mark.parametrize("method, n_splits", [("poly", 1), ("mhr", 4)])
def test_poly_and_mhr_equal_peft_poly(method, n_splits):
    base = _tiny_t5()
    ours = copy.deepcopy(base)
    config = TensorPolyConfig(method=method, rank=2, n_tasks=3, n_skills=3, n_splits=n_splits, target_modules=TARGETS)
    apply_adapters(ours, config)
    _randomise(ours)
    peft_config = peft.PolyConfig(
        task_type="SEQ_2_SEQ_LM", target_modules=PEFT_TARGETS, r=2, n_tasks=3, n_skills=3, n_splits=n_splits
    )
    theirs = peft.get_peft_model(copy.deepcopy(base), peft_config).eval()

    copied = 0
    for name, layer in adapter_layers(ours).items():
        target = theirs.base_model.model.get_submodule(name)
        with torch.no_grad():
            target.poly_lora_A["default"].copy_(layer.poly_lora_a)
            target.poly_lora_B["default"].copy_(layer.poly_lora_b)
            target.poly_router["default"].module_logits.copy_(layer.router.logits)
        copied += 1
    assert copied == 36

    ids, labels = torch.randint(3, 300, (3, 6)), torch.randint(3, 300, (3, 4))
    task_ids = torch.tensor([2, 0, 1])
    with torch.no_grad(), use_tasks(ours, task_ids):
        our_logits = ours(input_ids=ids, labels=labels).logits
    with torch.no_grad():
        their_logits = theirs(input_ids=ids, labels=labels, task_ids=task_ids).logits
    torch.testing.assert_close(our_logits, their_logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_exported_lora_reproduces_outputs_in_peft(method, tmp_path):
    base = _tiny_t5().double()  # float64, so that the two summation orders agree to 1e-9
    ours = copy.deepcopy(base)
    n_splits = 2 if method == "mhr" else 1
    config = TensorPolyConfig(method=method, rank=2, n_tasks=3, n_terms=3, n_skills=3, n_splits=n_splits, scaling=0.7)
    apply_adapters(ours, config)
    _randomise(ours)

    path = export_peft_lora(ours, task=1, path=tmp_path / "lora")
    written = json.loads((path / "adapter_config.json").read_text())
    assert written["peft_type"] == "LORA"
    assert written["r"] == 2
    assert written["lora_alpha"] == pytest.approx(1.4)
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(path)).eval()

    ids, labels = torch.randint(3, 300, (2, 6)), torch.randint(3, 300, (2, 4))
    with torch.no_grad(), use_tasks(ours, 1):
        our_logits = ours(input_ids=ids, labels=labels).logits
    with torch.no_grad():
        their_logits = loaded(input_ids=ids, labels=labels).logits
    torch.testing.assert_close(our_logits, their_logits, rtol=1e-9, atol=1e-9)


def test_export_without_adapters_raises(tmp_path):
    with pytest.raises(ValueError, match="the model has no adapter layers to export"):
        export_peft_lora(_tiny_t5(), 0, tmp_path)


def test_export_task_outside_router_raises(tmp_path):
    model = _tiny_t5()
    apply_adapters(model, TensorPolyConfig(n_tasks=2))
    with pytest.raises(ValueError, match="task id 2 is outside the router, which has 2 tasks"):
        export_peft_lora(model, 2, tmp_path)
