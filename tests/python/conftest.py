"""Fixtures of the awqcpp tests: the default model and text (scripts/setup.sh downloads them) and
one small quantization shared by the tests that read its checkpoint."""

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ASSETS = pathlib.Path(os.environ.get("AWQ_ASSETS_DIR", ROOT / "assets"))
MODEL = ASSETS / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
EMMA = ASSETS / "text" / "emma.txt"

# A search small enough for seconds on two cores: 16 samples of Emma cut into 64-token blocks and
# a 4-point scale grid (AutoAWQ's is 20). The tests check the plumbing, not the quality.
SMALL = dict(max_calib_samples=16, max_calib_seq_len=64, n_grid=4)
# AutoAWQ's README settings but group size 64: SmolLM2's width, 576, is not a multiple of 128.
QUANT_CONFIG = {"zero_point": True, "q_group_size": 64, "w_bit": 4, "version": "GEMM"}


def pytest_collection_modifyitems(config, items):
    if not MODEL.exists() or not EMMA.exists():
        skip = pytest.mark.skip(reason=f"{MODEL} or {EMMA} missing: run scripts/setup.sh")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def quantized(tmp_path_factory):
    """(model after quantize(), report, checkpoint folder) of the default model."""
    from awqcpp import AutoAWQForCausalLM

    out = tmp_path_factory.mktemp("ckpt") / "smollm2-awq"
    model = AutoAWQForCausalLM.from_pretrained(str(MODEL))
    report = model.quantize(None, quant_config=QUANT_CONFIG, calib_data=str(EMMA),
                            progress=False, **SMALL)
    model.save_quantized(str(out))
    return model, report, out
