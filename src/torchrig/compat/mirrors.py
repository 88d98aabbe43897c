"""Mirror presets (`sources.preset`) from data/mirrors.toml, each with its sources.

A preset fills the [sources] keys a spec leaves out: the package index, the index torch comes
from, the Hugging Face endpoint and the distribution's package mirror. The values live in the
data file, not here, so a changed mirror is a data change with a cited source.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources

from pydantic import BaseModel, ConfigDict, model_validator


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    title: str
    url: str = ""


class Preset(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str
    index: str
    torch_index: str
    hf_endpoint: str
    apt_debian: str
    apt_debian_aarch64: str
    apt_ubuntu: str
    apt_ubuntu_aarch64: str
    sources: list[str]

    def spec_values(self) -> dict[str, str]:
        """The [sources] keys this preset sets (the apt mirror is per distribution)."""
        return {
            "index": self.index,
            "torch_index": self.torch_index,
            "hf_endpoint": self.hf_endpoint,
        }

    def apt_mirror(self, family: str, arch: str) -> str:
        """The package mirror for a distribution family ("debian", "ubuntu") on `arch`."""
        if family not in ("debian", "ubuntu"):
            return ""
        main: str = getattr(self, f"apt_{family}")
        ports: str = getattr(self, f"apt_{family}_aarch64")
        return ports if arch == "aarch64" and ports else main


class Mirrors(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: list[Preset]
    source: list[Source]

    @model_validator(mode="after")
    def _cited(self) -> Mirrors:
        known = {s.key for s in self.source}
        for preset in self.preset:
            missing = [k for k in preset.sources if k not in known]
            if missing:
                raise ValueError(f"preset {preset.name} cites unknown sources {missing}")
        return self


@cache
def load_mirrors() -> Mirrors:
    text = resources.files("torchrig.compat").joinpath("data", "mirrors.toml").read_text("utf-8")
    return Mirrors.model_validate(tomllib.loads(text))


def preset_names() -> list[str]:
    return [p.name for p in load_mirrors().preset]


def find_preset(name: str) -> Preset | None:
    return next((p for p in load_mirrors().preset if p.name == name), None)
