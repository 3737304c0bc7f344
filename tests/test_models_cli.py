"""``respike train``/``eval`` flags: defaults from the dataclasses, config files, model cards."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import replace
from pathlib import Path

import pytest

from respike.events.inputs import parse_size
from respike.models.checkpoint import read_checkpoint_info, resolve_checkpoint
from respike.models.cli import (
    add_eval_arguments,
    add_train_arguments,
    apply_config_file,
    train_config_from_args,
)
from respike.models.datasets import TRAINING_SCENE, DvsRandomisation
from respike.models.hybrid import ModelConfig
from respike.models.snn import SNNConfig
from respike.models.training import TrainConfig, build_model


def parse(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser.parse_args(list(flags))


def test_flags_not_given_keep_the_dataclass_defaults() -> None:
    config = train_config_from_args(parse("--data", "nmnist:/x"))
    assert config == TrainConfig(data="nmnist:/x")
    assert config.snn is None and config.ann is None and config.fusion is None
    synthetic = train_config_from_args(parse("--data", "synthetic"))
    assert synthetic.scene == TRAINING_SCENE and synthetic.dvs is None
    assert synthetic.val_data == "synthetic?split=val", "synthetic runs validate on its val split"


def test_every_flag_defaults_to_not_given() -> None:
    for parser_of in (add_train_arguments, add_eval_arguments):
        parser = argparse.ArgumentParser()
        parser_of(parser)
        defaults = {a.dest: a.default for a in parser._actions if a.dest != "help"}
        assert all(v is None for v in defaults.values()), f"flag defaults repeated: {defaults}"


def test_sizes_are_width_by_height_and_held_as_height_width() -> None:
    assert parse_size("160x120") == (120, 160)
    assert parse_size("160x120").width == 160 and parse_size("48") == (48, 48)
    with pytest.raises(ValueError, match="size '0x5'; expected WIDTHxHEIGHT or N"):
        parse_size("0x5")
    config = train_config_from_args(
        parse("--data", "synthetic", "--snn-size", "64x48", "--scene-size", "200x100")
    )
    assert (config.input_spec.snn_width, config.input_spec.snn_height) == (64, 48)
    assert config.scene is not None and (config.scene.width, config.scene.height) == (200, 100)


def test_event_input_gets_its_two_channels_and_the_emulator_ranges() -> None:
    config = train_config_from_args(
        parse("--data", "synthetic", "--snn-input", "events", "--dvs-threshold", "0.1,0.3")
    )
    assert config.input_spec.snn_channels == 2
    assert config.dvs == DvsRandomisation(threshold_range=(0.1, 0.3))


def test_a_branch_flag_builds_that_branch_from_its_dataclass() -> None:
    config = train_config_from_args(
        parse("--data", "synthetic", "--model", "respike_tiny", "--snn-stem-stride", "2")
    )
    assert config.snn == SNNConfig(blocks=(1, 1, 1, 1)), "given flags apply, even at the default"
    decay = train_config_from_args(parse("--data", "synthetic", "--lif-decay", "0"))
    assert decay.snn is not None and decay.snn.lif.decay == 0.0


def test_config_file_sets_defaults_and_flags_win(tmp_path: Path) -> None:
    (tmp_path / "run.toml").write_text(
        'data = "synthetic"\nepochs = 3\nsnn-size = "48"\nlr = 0.01\nsnn-input = "events"\n'
    )
    args = apply_config_file(
        parse("--config", str(tmp_path / "run.toml"), "--lr", "0.5", "--snn-input", "residual")
    )
    config = train_config_from_args(args)
    assert config.epochs == 3 and config.input_spec.snn_size == (48, 48)
    assert config.lr == 0.5, "a flag on the command line wins over the file"
    assert config.input_spec.snn_input == "residual", "also when it equals the default"
    assert config.val_data == "synthetic?split=val"


def test_motion_and_key_residual_flags_reach_the_model_config() -> None:
    flags = ["--data", "synthetic", "--snn-motion", "1,2", "--snn-motion-delays", "1,2"]
    config = train_config_from_args(parse(*flags, "--key-residual", "previous"))
    assert config.snn is not None
    assert config.snn.motion_shifts == (1, 2) and config.snn.motion_delays == (1, 2)
    assert config.input_spec.key_residual == "previous"


@pytest.mark.parametrize(
    "name", ["actions", "actions-ann", "actions-snn", "gestures-dvs", "nmnist"]
)
def test_recorded_commands_rebuild_the_shipped_models(name: str) -> None:
    """The command lines a shipped checkpoint records give the model it holds: training, then
    `respike calibrate` for its open-set rule."""
    info = read_checkpoint_info(resolve_checkpoint(name))
    argv = shlex.split(info.extra["command"])
    config = train_config_from_args(parse(*argv[argv.index("train") + 1 :]))
    built = build_model(config, len(info.class_names)).config
    shipped = ModelConfig.from_dict(info.config)
    assert built == replace(shipped, open_set=None), f"{name}: the command gives another model"
    if shipped.open_set is not None:
        assert "calibrate" in info.extra["open_set"]["command"]
    assert config.classes in ((), info.class_names)
