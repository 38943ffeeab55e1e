"""DualStyleGAN's own network fields (the `dualstylegan` section of a ModelConfig), apart from
the base StyleGAN2's and from the training fields: T_s depth no longer tied to the base
mapping depth, the official coupling kept for configs (and frozen checkpoints) without the
section, and every field in exactly one section."""

from __future__ import annotations

import pytest
import torch

from ffhq_tools.cli import main
from ffhq_tools.errors import FfhqToolsError
from models.configs import (
    IDENTITY_FIELDS,
    NETWORK_FIELDS,
    TRAINING_FIELDS,
    DualStyleGANNetwork,
    ModelConfig,
    build_networks,
    get_config,
)
from models.layers import count_parameters


def test_every_field_is_in_exactly_one_section():
    import dataclasses

    names = [f.name for f in dataclasses.fields(ModelConfig)]
    sections = IDENTITY_FIELDS + NETWORK_FIELDS + TRAINING_FIELDS
    assert sorted(sections) == sorted(names) and len(set(sections)) == len(sections)
    assert "dualstylegan" in NETWORK_FIELDS and "mapping_layers" in NETWORK_FIELDS
    assert "r1_gamma" in TRAINING_FIELDS and "lr" not in NETWORK_FIELDS


def test_structure_transform_depth_is_its_own_field():
    tiny = get_config("tiny")  # a 2-layer base mapping: the old coupling gave T_s -4 layers
    config = tiny.replace(arch="dualstylegan",
                          dualstylegan=DualStyleGANNetwork(structure_layers=3))
    with torch.device("meta"):
        net = build_networks(config, 32)[0]
    assert len(net.style) == 1 + 3 and net.generator.mapping.num_layers == 2
    assert count_parameters(net.style) == 3 * (32 * 32 + 32)
    assert net.res_index == 6
    with pytest.raises(FfhqToolsError, match="mapping_layers is 2"):
        tiny.replace(arch="dualstylegan")
    with pytest.raises(FfhqToolsError, match="arch dualstylegan only"):
        tiny.replace(dualstylegan=DualStyleGANNetwork())
    with pytest.raises(FfhqToolsError, match="res_index 5"):
        DualStyleGANNetwork(res_index=5)


def test_section_round_trips_and_old_frozen_configs_keep_the_official_coupling():
    config = get_config("tiny").replace(
        arch="dualstylegan", dualstylegan=DualStyleGANNetwork(res_index=4, structure_layers=1))
    data = config.to_dict()
    assert data["dualstylegan"] == {"res_index": 4, "structure_layers": 1}
    assert ModelConfig.from_dict(data) == config
    old = get_config("stylegan2-F").replace(arch="dualstylegan").to_dict()
    del old["dualstylegan"]  # frozen before the section existed
    restored = ModelConfig.from_dict(old)
    assert restored.dualstylegan == DualStyleGANNetwork(res_index=6, structure_layers=2)
    with pytest.raises(FfhqToolsError, match="dualstylegan has unknown field.*depth"):
        ModelConfig.from_dict({**data, "dualstylegan": {"depth": 2}})


def test_configs_show_prints_network_and_training_sections(capsys):
    assert main(["configs", "show", "tiny"]) == 0
    out = capsys.readouterr().out
    network, training = out.index("network fields:"), out.index("training fields:")
    assert network < out.index("  mapping_layers:", network) < training
    assert out.index("  r1_gamma:", network) > training
    assert "dualstylegan" not in out
