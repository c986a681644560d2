"""The SFT stage end to end on the offline world, its resume, and its bad-input errors."""

import dataclasses
import json
import subprocess
import sys

import pytest
import yaml

from alignment.recipe import load_recipe
from alignment.run_dir import MARKER

pytestmark = pytest.mark.slow


def rlhf(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "alignment.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def small_recipe(tmp_path, name="sft-test", n_sft=2000, **sft):
    overrides = [f"output_dir={tmp_path / name}", f"suite.n_sft={n_sft}", "suite.n_eval=100", "sft.gold_eval_prompts=100",
                 "sft.report_to=[none]"] + [f"sft.{k}={v}" for k, v in sft.items()]
    return load_recipe("configs/quickstart.yaml", overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from alignment.sft import train_sft

    tmp = tmp_path_factory.mktemp("sft")
    recipe = small_recipe(tmp, n_sft=4000)  # the quickstart's own SFT settings
    return recipe, train_sft(recipe)


def test_sft_lifts_heldout_gold_far_above_base_yet_below_perfect(trained):
    _, metrics = trained
    seen, base = metrics["gold"]["eval_seen"], metrics["base_gold"]["eval_seen"]
    assert seen["gold"] > base["gold"] + 0.25, (seen, base)
    assert seen["gold_ci"][0] > base["gold_ci"][1]
    assert seen["gold"] < 0.98
    demo = metrics["demonstrations_gold"]["gold"]
    assert 0.5 < demo < 1.0


def test_sft_leaves_a_loadable_checkpoint_metrics_and_marker(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    recipe, metrics = trained
    out = recipe.output_dir + "/sft"
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and tok.pad_token
    assert model.config.vocab_size >= len(tok)
    saved = json.load(open(out + "/metrics.json"))
    assert saved["gold"]["eval_seen"]["gold"] == metrics["gold"]["eval_seen"]["gold"]
    assert json.load(open(f"{out}/{MARKER}"))["stage"] == "sft"
    assert yaml.safe_load(open(recipe.output_dir + "/recipe.yaml"))["suite"]["n_eval"] == 100


def test_completed_stage_is_skipped(trained):
    from alignment.sft import train_sft

    recipe, metrics = trained
    assert train_sft(recipe) == json.load(open(recipe.output_dir + "/sft/metrics.json"))


def test_interrupted_run_resumes_from_its_last_checkpoint(tmp_path, capsys):
    from alignment.sft import train_sft

    recipe = small_recipe(tmp_path, max_steps=12, save_steps=6, eval_steps=6, gold_eval_prompts=4)
    train_sft(recipe)
    sft = tmp_path / "sft-test" / "sft"
    # Simulate a kill after the step-12 checkpoint: no marker, no final model.
    (sft / MARKER).unlink()
    (sft / "model.safetensors").unlink()
    recipe.sft.max_steps = 18
    metrics = train_sft(recipe)
    assert "resuming from" in capsys.readouterr().out
    assert metrics["steps"] == 18


def test_lora_sft_saves_adapter_and_merged_model(tmp_path):
    from alignment.sft import train_sft

    recipe = small_recipe(tmp_path, max_steps=4, gold_eval_prompts=4)
    recipe.sft.lora.enabled = True
    train_sft(recipe)
    sft = tmp_path / "sft-test" / "sft"
    assert (sft / "adapter" / "adapter_config.json").is_file()
    assert (sft / "model.safetensors").is_file() and not (sft / "adapter_config.json").exists()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from alignment.suite.world import build_world

    recipe = small_recipe(tmp_path_factory.mktemp("world"), name="w")
    return build_world(recipe)


def _one_error_line(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [l for l in result.stderr.splitlines() if "error:" in l]  # progress bars may precede it
    assert len(lines) == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_bad_inputs_give_one_clear_line(tmp_path, world):
    base = str(world.model_dir)
    out = f"output_dir={tmp_path / 'r'}"
    _one_error_line(rlhf("sft", "configs/quickstart.yaml", out, "model.name_or_path=/no/such/model"), "model.name_or_path", "/no/such/model")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{oops\n')
    _one_error_line(rlhf("sft", "configs/quickstart.yaml", out, f"model.name_or_path={base}", f"data.sources.0.path={bad}"), "bad.jsonl", "row 2")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    _one_error_line(rlhf("sft", "configs/quickstart.yaml", out, f"model.name_or_path={base}", f"data.sources.0.path={empty}"), "empty.jsonl", "empty")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # unwritable even for root, unlike chmod
    _one_error_line(rlhf("sft", "configs/quickstart.yaml", f"output_dir={blocker / 'run'}", f"model.name_or_path={base}"), "not writable")


@pytest.mark.parametrize("broken", ["chat_template", "pad_token"])
def test_tokenizer_without_chat_template_or_pad_token_is_rejected(tmp_path, world, broken):
    import shutil

    from transformers import AutoTokenizer

    model = tmp_path / "model"
    shutil.copytree(world.model_dir, model)
    tok = AutoTokenizer.from_pretrained(model)
    if broken == "chat_template":
        tok.chat_template = None
        (model / "chat_template.jinja").unlink(missing_ok=True)
    else:
        tok.pad_token = None
    tok.save_pretrained(model)
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg.pop(broken, None)
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    result = rlhf("sft", "configs/quickstart.yaml", f"output_dir={tmp_path / 'r'}", f"model.name_or_path={model}",
                  f"data.sources.0.path={world.suite_dir / 'sft.jsonl'}")
    _one_error_line(result, "no chat template" if broken == "chat_template" else "no pad token")


def test_rows_cut_off_before_their_answer_are_dropped_and_counted(tmp_path, world, capsys):
    """A prompt that fills model.max_length leaves no assistant token to learn from."""
    from alignment.sft import train_sft

    rows = [{"prompt": "say cat", "completion": "cat"}, {"prompt": "word " * 5000, "completion": "lost"},
            {"prompt": "say dog", "completion": "dog"}]
    data = tmp_path / "some-long.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = load_recipe("configs/quickstart.yaml", [f"output_dir={tmp_path / 'r'}", f"model.name_or_path={world.model_dir}",
                                                     f"data.sources.0.path={data}", "data.eval_fraction=0", "sft.max_steps=1",
                                                     "sft.gold_eval_prompts=0", "sft.report_to=[none]"])
    metrics = train_sft(recipe)
    assert metrics["rows_dropped_no_assistant_token_within_max_length"] == 1 and metrics["train_rows"] == 2
    assert f"sft: {data}: dropped 1 of 3 rows whose answer starts beyond model.max_length=128 tokens (rows 2)" \
        in capsys.readouterr().out


def test_nothing_left_to_train_on_is_one_line(tmp_path, world):
    data = tmp_path / "all-long.jsonl"
    data.write_text(json.dumps({"prompt": "word " * 5000, "completion": "lost"}) + "\n")
    result = rlhf("sft", "configs/quickstart.yaml", f"output_dir={tmp_path / 'r'}", f"model.name_or_path={world.model_dir}",
                  f"data.sources.0.path={data}")
    _one_error_line(result, str(data), "no row has an assistant token within model.max_length=128",
                    "all 1 rows are cut off before the answer")


@dataclasses.dataclass
class TrainingArguments4x:
    """The two warm-up fields as transformers 4.x declares them (4.56: an int `warmup_steps`, a `warmup_ratio`)."""

    warmup_steps: int = 0
    warmup_ratio: float = 0.0


def test_warmup_is_a_share_of_all_steps_on_4x_and_5x():
    """sft, dpo and reward pass `warmup_ratio` through one helper: 4.x rejects warmup_steps=0.05
    (not an integer) and takes warmup_ratio; 5.x has no warmup_ratio and reads warmup_steps < 1 as a share."""
    from transformers import TrainingArguments
    from trl import DPOConfig, RewardConfig, SFTConfig

    from alignment.models import warmup_arguments

    assert warmup_arguments(0.05, TrainingArguments4x) == {"warmup_ratio": 0.05}
    for config_class in (SFTConfig, DPOConfig, RewardConfig):  # the installed versions, through TRL's configs
        args = config_class(output_dir="unused", report_to="none", bf16=False, use_cpu=True,
                            **warmup_arguments(0.05, TrainingArguments))
        assert args.get_warmup_steps(200) == 10, config_class.__name__
