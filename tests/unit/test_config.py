import pytest
import yaml

from pipeline.config import Config, build_config, load_config, reference_yaml
from pipeline.errors import ConfigError


def test_unknown_key_is_a_one_line_error_with_its_path():
    with pytest.raises(ConfigError) as err:
        build_config({"scoring": {"batchsize": 4}})
    assert str(err.value) == "config: scoring.batchsize: unknown key"


def test_overrides_are_typed_yaml_values_never_code():
    cfg = build_config({}, ["scoring.batch_size=4", "noisy_finetune.use_gpu=true", "data.input=[a.jsonl, b.csv]",
                            "output.dir=__import__('os').system('x')"])
    assert cfg.scoring.batch_size == 4 and cfg.noisy_finetune.use_gpu is True
    assert cfg.data.input == ["a.jsonl", "b.csv"]
    assert cfg.output.dir == "__import__('os').system('x')"


def test_bad_values_name_the_field():
    with pytest.raises(ConfigError, match=r"scoring.batch_size: Input should be greater than 0"):
        build_config({}, ["scoring.batch_size=0"])
    with pytest.raises(ConfigError, match="filter.value is required"):
        build_config({}, ["filter.method=fixed"])


def test_single_input_string_becomes_a_list():
    assert build_config({"data": {"input": "x.jsonl"}}).data.input == ["x.jsonl"]


def test_reference_yaml_documents_and_round_trips_every_key():
    text = reference_yaml()
    tree = yaml.safe_load(text)
    assert Config.model_validate(tree) == Config()
    for section, field in Config.model_fields.items():
        assert field.description
        sub = field.annotation
        if hasattr(sub, "model_fields"):
            for key, f in sub.model_fields.items():
                assert f.description, f"{section}.{key} has no documentation"
                assert f"  {key}:" in text


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))


def test_fingerprint_changes_only_with_its_sections():
    a = build_config({})
    b = build_config({}, ["filter.method=drop_fraction", "filter.value=0.1"])
    assert a.fingerprint("scoring") == b.fingerprint("scoring")
    assert a.fingerprint("filter") != b.fingerprint("filter")
