"""What the benchmark scripts share: their options, the environment lines, and the printing."""

from __future__ import annotations

import argparse

import torch

from aigc_course import runtime


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """``--profile`` and ``--steps``, described by the first line of the script's docstring."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--profile", choices=runtime.PROFILE_NAMES)
    parser.add_argument("--steps", type=int)
    return parser


def environment(profile: runtime.Profile, device: torch.device) -> dict[str, str]:
    """The first figures of every report: device, torch, profile, precision."""
    return {
        "device": runtime.device_summary(device),
        "torch": torch.__version__,
        "profile": profile.name,
        "precision": runtime.choose_precision(device).name,
    }


def print_figures(figures: dict[str, object]) -> None:
    """One ``name: value`` line per figure."""
    for name, value in figures.items():
        print(f"{name}: {value}")
