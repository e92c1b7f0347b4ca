"""A copy of an embedded model profile with a small ``sampling.max_tokens``, for
tests that run the real model as a simulated user, a judge or the agent and
must stay short.  Skips (saying why) when the model is not installed."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml


def short_profile_copy(model: str, name: str, max_tokens: int, directory: Path) -> Path:
    """Write ``<directory>/<name>.yaml``: profile ``model`` with ``max_tokens``
    (its chat template file made absolute, as the copy lives elsewhere)."""
    from slm_agent.profiles import ProfileError, load_profile

    try:
        prof = load_profile(model)
        prof.resolved_model_path()
    except (ProfileError, OSError, ImportError) as exc:
        pytest.skip(f"model {model} not installed: {exc}")
    data = yaml.safe_load(Path(prof.source).read_text())
    data["name"] = name
    data["chat"]["template_file"] = str(Path(prof.source).parent / data["chat"]["template_file"])
    data["sampling"]["max_tokens"] = max_tokens
    path = Path(directory) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
