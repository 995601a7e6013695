"""``make deb``: the Debian 12 package (installer/deb/build.py) built, checked by lintian, installed with
apt-get, run (``--version``, ``inspect`` on the demo image, ``man``), and purged without a trace.

The package is built once per module; installing needs root (CI runs as root). Never leaves it installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import APP_ID, __version__
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
BIN = "/usr/bin/shieldwright"
DESKTOP = f"/usr/share/applications/{APP_ID}.desktop"
METAINFO = f"/usr/share/metainfo/{APP_ID}.metainfo.xml"
MAN = "/usr/share/man/man1/shieldwright.1.gz"
SVG = f"/usr/share/icons/hicolor/scalable/apps/{APP_ID}.svg"
PNG_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
#: The lintian warnings the package is known to leave (none of them an error), each with its reason:
#: initial-upload-closes-no-bugs: not an upload to Debian, there is no ITP bug to close;
#: shared-library-lacks-prerequisites: ICU's data-only library and two of NumPy's test modules link nothing;
#: unusual-interpreter: pefile.py (a module, not run) starts with #!/usr/bin/python.
KNOWN_WARNINGS = {
    "initial-upload-closes-no-bugs",
    "shared-library-lacks-prerequisites",
    "unusual-interpreter",
}
APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}


def run(*cmd: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("timeout", 900)
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]


def installed_version() -> str | None:
    out = run("dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}", "shieldwright")
    return out.stdout.split()[1] if out.returncode == 0 and out.stdout.startswith("ii") else None


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


# --- without building ------------------------------------------------------------------------------


def test_png_icons_in_every_size() -> None:
    for size in PNG_SIZES:
        path = ROOT / "resources" / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        assert path.is_file(), f"missing {path} (run installer/render_icons.py)"
        assert png_size(path) == (size, size), path


def tools_the_app_runs() -> set[str]:
    """Every program name the engine hands to app.tools (run_tool, require_tool, find_tool and wrappers)."""
    call = re.compile(r'\b(?:run_tool|require_tool|find_tool|_run|_mtools|which)\(\s*"([A-Za-z0-9_.+-]+)"')
    return {name for py in (ROOT / "app").rglob("*.py") for name in call.findall(py.read_text())}


def files_the_app_reads() -> set[str]:
    """Absolute paths of other packages' files named in the engine (systemd-stub, OVMF, busybox)."""
    literal = re.compile(r'Path\("(/(?:usr|bin|sbin|lib)/[^"]+)"\)')
    found = {p for py in (ROOT / "app").rglob("*.py") for p in literal.findall(py.read_text())}
    return {p for p in found if "/shieldwright" not in p}


def owning_packages(path: str) -> set[str]:
    """The Debian packages owning ``path`` (merged /usr: tried as given, resolved, and without /usr)."""
    for candidate in dict.fromkeys([path, os.path.realpath(path), path.removeprefix("/usr")]):
        out = run("dpkg-query", "-S", candidate)
        if out.returncode == 0:
            return {
                p.strip().split(":")[0]
                for ln in out.stdout.splitlines()
                for p in ln.split(": ")[0].split(",")
            }
    raise AssertionError(f"no installed package owns {path}; installer/apt-packages.txt must list it")


def always_installed(package: str) -> bool:
    out = run("dpkg-query", "-W", "-f=${Essential} ${Priority}", package)
    return out.returncode == 0 and (out.stdout.startswith("yes") or out.stdout.endswith("required"))


def test_every_tool_the_app_runs_is_a_dependency() -> None:
    saved = list(sys.path)
    try:  # installer/deb/build.py, under a name of its own (it puts installer/ on sys.path for dist.py)
        spec = importlib.util.spec_from_file_location("sw_deb_build", ROOT / "installer" / "deb" / "build.py")
        assert spec and spec.loader
        deb_build = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(deb_build)
    finally:
        sys.path[:] = saved
        sys.modules.pop("dist", None)
    declared = set(deb_build.TOOLS_DEPENDS) | set(deb_build.TOOLS_RECOMMENDS)
    tools = tools_the_app_runs()
    assert {"qemu-img", "mkfs.vfat", "mcopy", "debugfs", "swtpm"} <= tools  # the scan itself works
    uncovered = []
    for tool in sorted(tools):
        path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
        assert path, f"{tool} is not installed; installer/apt-packages.txt must list its package"
        owners = owning_packages(path)
        if not owners & declared and not any(always_installed(p) for p in owners):
            uncovered.append(f"{tool} ({', '.join(sorted(owners))})")
    for path in sorted(files_the_app_reads()):
        owners = owning_packages(path)
        if not owners & declared and not any(always_installed(p) for p in owners):
            uncovered.append(f"{path} ({', '.join(sorted(owners))})")
    assert not uncovered, "not in Depends/Recommends of installer/deb/build.py: " + "; ".join(uncovered)


# --- the package -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for tool in ("dpkg-deb", "dpkg-shlibdeps", "readelf", "strip"):
        require_tool(tool)
    out = tmp_path_factory.mktemp("deb")
    started = time.monotonic()
    result = run(
        sys.executable, ROOT / "installer" / "deb" / "build.py", "--out", out, cwd=ROOT, timeout=1800
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (package,) = out.glob("shieldwright_*.deb")
    size = package.stat().st_size / 2**20
    print(f"\nbuilt {package.name}: {size:.1f} MiB in {time.monotonic() - started:.0f} s")
    return package


@pytest.fixture(scope="module")
def contents(deb: Path) -> dict[str, str]:
    """Path (absolute, as installed) -> the mode string dpkg-deb -c shows."""
    out = run("dpkg-deb", "-c", deb)
    assert out.returncode == 0, out.stderr
    listing = {}
    for line in out.stdout.splitlines():
        fields = line.split(None, 5)
        name = fields[5].split(" -> ")[0].removeprefix(".").rstrip("/") or "/"
        listing[name] = fields[0]
    return listing


def field(deb: Path, name: str) -> str:
    return run("dpkg-deb", "-f", deb, name).stdout.strip()


@pytest.mark.slow
def test_package_contents(deb: Path, contents: dict[str, str]) -> None:
    assert deb.name == f"shieldwright_{__version__}-1_amd64.deb"
    for path in (BIN, DESKTOP, METAINFO, MAN, SVG, "/usr/share/doc/shieldwright/copyright"):
        assert path in contents, path
    for size in PNG_SIZES:
        assert f"/usr/share/icons/hicolor/{size}x{size}/apps/{APP_ID}.png" in contents
    assert contents[BIN].startswith("-rwxr-xr-x")
    site = "/usr/lib/shieldwright/lib/python3.11/site-packages"
    for module in ("app/__main__.py", "app/cli.py", "wizard_pages/__init__.py", "PySide6/QtWidgets.abi3.so"):
        assert f"{site}/{module}" in contents, module
    for source in (ROOT / "app").rglob("*.c"):
        stem = f"{site}/{source.relative_to(ROOT).with_suffix('').as_posix()}"
        assert any(p.startswith(stem + ".cpython-311-") for p in contents), f"{source.name} not compiled"
    # Only /usr; no byte code (postinst compiles, prerm removes it); nothing executable in the environment.
    assert all(p == "/" or p.startswith("/usr") for p in contents)
    assert not [p for p in contents if "__pycache__" in p or p.endswith(".pyc")]
    assert not [
        p for p, mode in contents.items() if p.startswith("/usr/lib/") and mode[0] == "-" and "x" in mode
    ]


@pytest.mark.slow
def test_control_fields(deb: Path) -> None:
    assert field(deb, "Package") == "shieldwright"
    assert field(deb, "Version") == f"{__version__}-1"
    assert field(deb, "Architecture") == "amd64"
    depends = {d.split()[0] for d in field(deb, "Depends").split(", ")}
    recommends = {d.split()[0] for d in field(deb, "Recommends").split(", ")}
    assert {"python3.11", "e2fsprogs", "dosfstools", "mtools", "qemu-utils", "systemd-boot-efi"} <= depends
    # From dpkg-shlibdeps: the libraries the compiled modules and Qt's X11 platform link.
    assert {"libc6", "libssl3", "libparted2", "libtss2-esys-3.0.2-0", "libxcb1", "libgl1"} <= depends
    assert {"qemu-system-x86", "ovmf", "swtpm", "swtpm-tools", "busybox-static"} <= recommends


@pytest.mark.slow
def test_no_build_path_leaks_into_the_package(deb: Path, tmp_path: Path) -> None:
    root = tmp_path / "x"
    assert run("dpkg-deb", "-x", deb, root).returncode == 0
    for rel in ("usr/lib/shieldwright/pyvenv.cfg", "usr/bin/shieldwright"):
        text = (root / rel).read_text()
        assert str(ROOT) not in text and "/build/" not in text, rel
    assert os.readlink(root / "usr/lib/shieldwright/bin/python3.11") == "../../../bin/python3.11"


@pytest.mark.slow
def test_lintian_reports_no_errors(deb: Path) -> None:
    require_tool("lintian")
    out = run("lintian", "--tag-display-limit", "0", deb, timeout=900)
    tags = [ln for ln in out.stdout.splitlines() if re.match(r"^[EWX]: ", ln)]
    errors = [ln for ln in tags if ln.startswith(("E:", "X:"))]
    assert not errors, "lintian errors:\n" + "\n".join(errors)
    warnings = {ln.split()[2] for ln in tags if ln.startswith("W:")}
    print("\nlintian warnings left: " + ", ".join(sorted(warnings)))
    assert warnings <= KNOWN_WARNINGS, f"new lintian warnings: {warnings - KNOWN_WARNINGS}"


# --- installed -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(deb: Path) -> Iterator[list[str]]:
    """``apt-get install ./shieldwright_*.deb``; the files dpkg lists for it. Purged afterwards if a test
    failed before test_purge_leaves_nothing_behind did."""
    if os.geteuid() != 0:
        pytest.skip("installing with apt-get needs root (CI runs the tests as root)")
    assert installed_version() is None, (
        "shieldwright is installed already; purge it before running these tests"
    )
    started = time.monotonic()
    out = run("apt-get", "install", "-y", f"./{deb.name}", cwd=deb.parent, env=APT_ENV)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    print(f"\ninstalled in {time.monotonic() - started:.1f} s")
    files = run("dpkg-query", "-L", "shieldwright").stdout.splitlines()
    try:
        yield files
    finally:
        if installed_version() is not None:
            run("apt-get", "purge", "-y", "shieldwright", env=APT_ENV)


@pytest.mark.slow
def test_installed_version(installed: list[str], tmp_path: Path) -> None:
    assert installed_version() == f"{__version__}-1"
    assert shutil.which("shieldwright") == BIN
    # Run isolated: a package named `app` in the current directory or on PYTHONPATH is never imported.
    decoy = tmp_path / "app"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise SystemExit('the decoy app package was imported')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = run(BIN, "--version", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"shieldwright {__version__}"


@pytest.mark.slow
def test_installed_inspect_on_the_demo_image(installed: list[str], demo_image: Path, tmp_path: Path) -> None:
    out = run(BIN, "inspect", demo_image, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "root-x86-64" in out.stdout and "EFI System Partition" in out.stdout
    # The installed engine reads the image exactly as the source tree does.
    packaged = run(BIN, "inspect", "--json", demo_image, cwd=tmp_path)
    source = run(sys.executable, "-m", "app", "inspect", "--json", demo_image, cwd=ROOT)
    assert packaged.returncode == 0 and source.returncode == 0, packaged.stderr + source.stderr
    assert json.loads(packaged.stdout) == json.loads(source.stdout)


@pytest.mark.slow
def test_installed_man_page(installed: list[str]) -> None:
    require_tool("man")
    assert run("man", "-w", "shieldwright").stdout.strip() == MAN
    env = {**os.environ, "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "100", "LC_ALL": "C.UTF-8"}
    out = run("man", "shieldwright", env=env)
    assert out.returncode == 0, out.stderr
    text = out.stdout.replace("\u2212", "-").replace("\u2010", "-")
    assert text.startswith("SHIELDWRIGHT(1)")
    for heading in ("NAME", "SYNOPSIS", "COMMANDS", "EXIT STATUS"):
        assert f"\n{heading}\n" in text
    for command in (
        "shieldwright inspect",
        "shieldwright cert new",
        "shieldwright luks encrypt",
        "shieldwright build",
    ):
        assert f"\n   {command}\n" in text, command


@pytest.mark.slow
def test_installed_desktop_file_and_metainfo_validate(installed: list[str]) -> None:
    desktop = run(require_tool("desktop-file-validate"), DESKTOP)
    assert desktop.returncode == 0 and not desktop.stdout.strip(), desktop.stdout + desktop.stderr
    metainfo = run(require_tool("appstreamcli"), "validate", "--no-net", METAINFO)
    assert metainfo.returncode == 0, metainfo.stdout + metainfo.stderr
    assert re.search(r"^Exec=shieldwright\b", Path(DESKTOP).read_text(), re.M)
    assert f'<launchable type="desktop-id">{APP_ID}.desktop</launchable>' in Path(METAINFO).read_text()


@pytest.mark.slow
def test_installed_gui_runs_on_x11_with_its_theme_icon(installed: list[str], tmp_path: Path) -> None:
    """On an X server (Xvfb), the pruned Qt of the package loads its xcb platform, the wizard's modules
    import, and the icon the desktop file names is found in the icon theme, as the wizard looks it up."""
    code = (
        "import app.gui.application\n"
        "from PySide6.QtWidgets import QApplication\n"
        "from PySide6.QtGui import QIcon\n"
        "a = QApplication(['shieldwright'])\n"
        f"icon = QIcon.fromTheme({APP_ID!r})\n"
        "assert not icon.pixmap(64, 64).isNull(), (QIcon.themeName(), QIcon.themeSearchPaths())\n"
        "print(a.platformName(), sorted({s.width() for s in icon.availableSizes()}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["QT_QPA_PLATFORM"] = "xcb"
    python = "/usr/lib/shieldwright/bin/python3"
    out = run(require_tool("xvfb-run"), "-a", python, "-I", "-c", code, cwd=tmp_path, env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    platform, sizes = out.stdout.strip().split(" ", 1)
    assert platform == "xcb"
    assert json.loads(sizes) == list(PNG_SIZES)


@pytest.mark.slow
def test_purge_leaves_nothing_behind(installed: list[str]) -> None:
    """Last: after ``apt-get purge`` no file of the package exists, and every directory of its list that
    still exists belongs to another package (/usr/share/man/man1, the icon theme, ...)."""
    # postinst byte-compiled the environment (and a run as root may add to it): prerm must remove it all.
    assert run(BIN, "--version").returncode == 0
    assert any(Path("/usr/lib/shieldwright").rglob("__pycache__")), "postinst did not byte-compile"
    started = time.monotonic()
    out = run("apt-get", "purge", "-y", "shieldwright", env=APT_ENV)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    print(f"\npurged in {time.monotonic() - started:.1f} s")
    assert installed_version() is None
    assert run("dpkg-query", "-W", "shieldwright").returncode != 0, (
        "dpkg still knows the package (not purged)"
    )
    assert len(installed) > 100
    left = []
    for path in installed:
        if path == "/." or not os.path.lexists(path):
            continue
        if not os.path.isdir(path) or os.path.islink(path):
            left.append(path)
        elif run("dpkg-query", "-S", path).returncode != 0:
            left.append(path + "/")
    assert not left, "left behind: " + ", ".join(left[:20])
    assert not os.path.lexists("/usr/lib/shieldwright")
