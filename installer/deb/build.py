"""``make deb``: a Debian 12 (bookworm, amd64) binary package of Shieldwright, with dpkg-deb.

    .venv/bin/python installer/deb/build.py [--out dist]      # -> dist/shieldwright_VERSION-1_amd64.deb

Layout of the package:

- ``/usr/lib/shieldwright``: a private virtual environment on Debian's ``/usr/bin/python3.11`` holding the
  wheel of ``make dist`` and its pinned dependencies from PyPI (the versions of ``.venv`` are used as
  constraints, so the package runs what the tests ran). Nothing in it is byte-compiled: postinst does that,
  prerm removes the caches, so ``apt-get purge`` leaves no file behind.
- ``/usr/bin/shieldwright``: a shell script running that environment's interpreter isolated (``-I``).
- the desktop file, AppStream metainfo, hicolor icons (scalable + PNG), the man page generated from the
  CLI's argparse parser (installer/manpage.py), copyright and changelog.

PySide6-Essentials brings all of Qt; the package keeps what a Qt Widgets application uses and drops the
developer tools and the QML/Quick, Designer, Help, UiTools and SQL families (the application imports
QtCore, QtGui and QtWidgets; a smoke test at build time opens the wizard's module on the offscreen
platform). Files that need a Qt library the wheel does not ship at all can never load and are dropped too.
Compiled files are stripped as dh_strip would (except auditwheel's grafted libraries, see strip()).

``Depends`` is computed by dpkg-shlibdeps over every compiled module of the environment and the Qt
libraries and plugins they need (platforms xcb/offscreen/minimal, image formats, icon engines, the portal
theme); the other Qt plugins (Wayland, GTK theme, EGLFS, CUPS, ...) are shipped but load only when their
libraries are present. The system tools the application runs are added by hand (TOOLS below).
"""

from __future__ import annotations

import argparse
import email.utils
import fnmatch
import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "installer"))

import dist  # noqa: E402  (installer/dist.py: the wheel)

PACKAGE = "shieldwright"
APP_ID = "io.github.shieldwright.Shieldwright"
DEBIAN_REVISION = "1"
ARCH = "amd64"
PYTHON = "/usr/bin/python3.11"
PY_VERSION = "3.11"
PREFIX = Path("usr/lib/shieldwright")
SITE = PREFIX / "lib" / f"python{PY_VERSION}" / "site-packages"
MAINTAINER = "Shieldwright developers <shieldwright@users.noreply.github.com>"
HOMEPAGE = "https://github.com/shieldwright/shieldwright"

#: The programs the application runs (app/tools.py run_tool/require_tool, app/template/demo.py) and the
#: files it reads from other packages, by Debian package. Depends: what building a template needs;
#: Recommends: test boots (QEMU, OVMF, swtpm) and the demo image (busybox-static; apt-get and dpkg-deb are
#: essential). tests/packaging/test_deb.py checks every tool named in app/ is covered.
TOOLS_DEPENDS = {
    "e2fsprogs": "debugfs, mkfs.ext4",
    "dosfstools": "mkfs.vfat, fsck.fat",
    "mtools": "mmd, mcopy, mdir",
    "qemu-utils": "qemu-img",
    "systemd-boot-efi": "linuxx64.efi.stub, systemd-bootx64.efi",
}
TOOLS_RECOMMENDS = {
    "qemu-system-x86": "qemu-system-x86_64 (test-boot)",
    "ovmf": "/usr/share/OVMF (test-boot, firmware vars)",
    "swtpm": "swtpm (test-boot, vtpm new)",
    "swtpm-tools": "swtpm_setup (vtpm new)",
    "busybox-static": "the demo image's initrd",
}

#: Relative to site-packages/PySide6: developer tools and files for building against Qt, and the image
#: format plugins that embed their own libjpeg / libtiff (the wizard shows SVG and PNG only).
PYSIDE_DEV = [
    "assistant", "designer", "linguist", "lrelease", "lupdate", "qmlformat", "qmllint", "qmlls", "svgtoqml",
    "include", "typesystems", "scripts", "lib", "../shiboken6/lib", "Qt/libexec", "Qt/metatypes", "Qt/qml",
    "Qt/plugins/designer", "Qt/plugins/qmltooling", "Qt/plugins/qmllint", "Qt/plugins/sqldrivers",
    "Qt/plugins/wayland-graphics-integration-server",
    "Qt/plugins/imageformats/libqjpeg.so", "Qt/plugins/imageformats/libqtiff.so",
]  # fmt: skip
#: Qt module families the application does not use (PySide6 modules, their stubs and Qt libraries).
PYSIDE_UNUSED = re.compile(
    r"qml|quick|designer|help|uitools|sql|labs|lottie|waylandcompositor|eglcompositor", re.I
)
#: Qt plugins (relative to PySide6/Qt/plugins) analysed for Depends: what the wizard needs on X11 and
#: offscreen. The others are shipped and load only where their libraries are installed.
CORE_PLUGINS = [
    "platforms/libqxcb.so", "platforms/libqoffscreen.so", "platforms/libqminimal.so", "xcbglintegrations/*",
    "imageformats/*", "iconengines/*", "platformthemes/libqxdgdesktopportal.so",
    "platforminputcontexts/libcompose*", "tls/*",
]  # fmt: skip

DESCRIPTION = """\
Signed, encrypted template disks for confidential VMs
 Shieldwright turns a prepared Linux disk image into a signed, encrypted
 template disk for Shielded and Confidential virtual machines: a signed
 Unified Kernel Image, a LUKS2-encrypted root, a predicted TPM PCR policy
 and a signed Volume Signature Catalog. It also produces the shielding data
 that lets a VM be provisioned from such a template.
 .
 A desktop wizard (Qt) walks through every step; the same engine runs
 headless from the command line for image pipelines. Everything works on
 image files as an ordinary user: no root, no loop devices, no
 device-mapper.
 .
 The application and its Python dependencies (PySide6, cryptography, NumPy,
 tpm2-pytss, pyparted, pefile) are installed in a private environment under
 /usr/lib/shieldwright."""


def log(message: str) -> None:
    print(f"deb: {message}", flush=True)


def app_version() -> str:
    text = (ROOT / "app" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if not match:
        raise SystemExit("deb: no __version__ in app/__init__.py")
    return match.group(1)


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH, else the last commit's time (reproducible), else now."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%ct"], capture_output=True, text=True, check=True
        )
        return int(out.stdout.strip())
    except (OSError, subprocess.CalledProcessError, ValueError):
        return int(time.time())


def run(*cmd: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; a failure ends the build with the command and the end of its output."""
    try:
        return subprocess.run([str(c) for c in cmd], check=True, text=True, **kwargs)  # type: ignore[call-overload]
    except subprocess.CalledProcessError as exc:
        tail = "\n".join(((exc.stderr or "") + (exc.stdout or "")).strip().splitlines()[-15:])
        raise SystemExit(
            f"deb: {' '.join(str(c) for c in cmd)[:200]} failed ({exc.returncode})\n{tail}"
        ) from None


# --- the private environment -----------------------------------------------------------------------


def constraints_file(tmp: Path) -> Path | None:
    """``pip freeze`` of the development .venv (what the tests ran), as pip constraints; None without it."""
    venv_python = ROOT / ".venv" / "bin" / "python"
    if not venv_python.exists():
        return None
    out = run(venv_python, "-m", "pip", "freeze", "--exclude-editable", capture_output=True).stdout
    lines = [ln for ln in out.splitlines() if ln and not ln.startswith(("-e", "#")) and "@" not in ln]
    path = tmp / "constraints.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def make_environment(pkgroot: Path, wheel: Path, pip_python: Path, tmp: Path) -> Path:
    """The venv at PREFIX inside ``pkgroot``, with the wheel and its dependencies; its site-packages.

    pip runs on Debian's interpreter (--python) with a cache of its own (build/deb-pip-cache), so modules
    built from source (pyparted, tpm2-pytss) are built for /usr/bin/python3.11, never taken from a wheel
    another interpreter built (whose RUNPATH would name that interpreter's directory)."""
    venv = pkgroot / PREFIX
    run(PYTHON, "-m", "venv", "--without-pip", venv)
    cmd: list[str | Path] = [pip_python, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q"]
    cmd += ["--cache-dir", ROOT / "build" / "deb-pip-cache"]
    cmd += [
        "--no-compile",
        "--no-warn-script-location",
        "--disable-pip-version-check",
        "--only-binary=PySide6-Essentials",
    ]
    constraints = constraints_file(tmp)
    if constraints:
        cmd += ["-c", constraints]
    run(*cmd, wheel)
    # Only the interpreter links stay in bin/: the console scripts and activate files name the build
    # directory; /usr/bin/shieldwright replaces the one console script the package needs.
    for entry in (venv / "bin").iterdir():
        if not entry.name.startswith("python"):
            entry.unlink()
    cfg = venv / "pyvenv.cfg"
    cfg.write_text(
        "".join(
            f"command = {PYTHON} -m venv /{PREFIX}\n" if ln.startswith("command =") else ln + "\n"
            for ln in cfg.read_text().splitlines()
        )
    )
    site = pkgroot / SITE
    for path in site.glob("*.dist-info/direct_url.json"):  # names the build directory
        path.unlink()
    for path in list(site.rglob("__pycache__")):
        shutil.rmtree(path)
    shutil.rmtree(venv / "include", ignore_errors=True)  # empty: no package here installs C headers
    return site


def is_elf(path: Path) -> bool:
    if not path.is_file() or path.is_symlink():
        return False
    with path.open("rb") as f:
        return f.read(4) == b"\x7fELF"


def needed(path: Path) -> list[str]:
    out = run("readelf", "-d", "-W", path, capture_output=True, env={**os.environ, "LC_ALL": "C"}).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def prune_pyside(site: Path) -> list[str]:
    """Drop PYSIDE_DEV, the PYSIDE_UNUSED families and ELF files that need a Qt library not shipped."""
    pyside = site / "PySide6"
    removed: list[str] = []

    def remove(path: Path) -> None:
        removed.append(str(path.relative_to(site)))
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()

    for rel in PYSIDE_DEV:
        if (pyside / rel).exists():
            remove(pyside / rel)
    for path in [*pyside.glob("Qt*.*"), *pyside.glob("libpyside6*"), *(pyside / "Qt" / "lib").glob("*")]:
        module = path.name.split(".")[0].removeprefix("libQt6").removeprefix("Qt").removeprefix("lib")
        if PYSIDE_UNUSED.search(module) and path.exists():
            remove(path)
    while True:
        elves = [p for p in pyside.rglob("*") if is_elf(p)]
        shipped = {p.name for p in site.rglob("*.so*")}
        broken = [
            p
            for p in elves
            if any(
                n.startswith(("libQt6", "libpyside6", "libshiboken6")) and n not in shipped for n in needed(p)
            )
        ]
        if not broken:
            return removed
        for path in broken:
            remove(path)


def strip(site: Path) -> int:
    """Strip debugging symbols from the compiled files as dh_strip does (most wheels ship them); the
    number of files stripped. Not the libraries auditwheel grafted in (``*.libs/``): patchelf rewrote
    their program headers, and strip would leave them unloadable ("ELF load command address/offset not
    page-aligned")."""
    elves = [p for p in site.rglob("*") if is_elf(p) and not p.parent.name.endswith(".libs")]
    unstripped = [p for p in elves if ".symtab" in run("readelf", "-S", "-W", p, capture_output=True).stdout]
    for path in unstripped:
        run("strip", "--remove-section=.comment", "--remove-section=.note", "--strip-unneeded", path)
    return len(unstripped)


def analysed_files(site: Path) -> tuple[list[Path], list[Path]]:
    """(ELF files dpkg-shlibdeps analyses, ELF files shipped but not analysed)."""
    elves = [p for p in site.rglob("*") if is_elf(p)]
    plugins = site / "PySide6" / "Qt" / "plugins"
    qt = site / "PySide6" / "Qt"
    roots = [p for p in elves if not p.is_relative_to(qt)]
    roots += [p for p in elves if p.is_relative_to(plugins) and _is_core_plugin(p.relative_to(plugins))]
    by_name: dict[str, Path] = {}
    for p in elves:
        by_name.setdefault(p.name, p)
    chosen: dict[Path, None] = {}
    todo = list(roots)
    while todo:
        path = todo.pop()
        if path in chosen:
            continue
        chosen[path] = None
        todo += [by_name[n] for n in needed(path) if n in by_name]
    return list(chosen), [p for p in elves if p not in chosen]


def _is_core_plugin(rel: Path) -> bool:
    return any(fnmatch.fnmatch(rel.as_posix(), pattern) for pattern in CORE_PLUGINS)


def shlibs_depends(build: Path, files: list[Path]) -> str:
    """dpkg-shlibdeps over ``files``, the package's own library directories searched first (-l)."""
    libdirs = sorted({str(p.parent) for p in files})
    cmd = ["dpkg-shlibdeps", "-O", *(f"-l{d}" for d in libdirs), *(str(f) for f in files)]
    result = subprocess.run(cmd, cwd=build, capture_output=True, text=True)
    errors = [ln for ln in result.stderr.splitlines() if "error" in ln]
    if result.returncode != 0:
        raise SystemExit(
            "deb: dpkg-shlibdeps failed:\n" + "\n".join(errors or result.stderr.splitlines()[-5:])
        )
    match = re.search(r"^shlibs:Depends=(.*)$", result.stdout, re.M)
    return match.group(1) if match else ""


def smoke_test(pkgroot: Path) -> None:
    """The staged environment runs the CLI and loads the wizard's Qt modules offscreen."""
    python = pkgroot / PREFIX / "bin" / "python3"
    icon = ROOT / "resources" / "icons" / f"{APP_ID}.svg"
    compiled = [".".join(c.relative_to(ROOT).with_suffix("").parts) for c in (ROOT / "app").rglob("*.c")]
    code = (
        "import numpy, numpy.linalg, parted, tpm2_pytss, cryptography.hazmat.bindings._rust\n"
        "assert numpy.linalg.inv(numpy.eye(3) * 2)[0, 0] == 0.5\n"
        + "".join(f"import {module}\n" for module in compiled)  # app.luks._xts, ...
        + "import app.gui.application\n"
        "from PySide6.QtWidgets import QApplication\n"
        "from PySide6.QtGui import QIcon\n"
        "a = QApplication(['shieldwright'])\n"
        f"assert not QIcon({str(icon)!r}).pixmap(48, 48).isNull(), 'the SVG icon engine did not load'\n"
        "assert a.platformName() == 'offscreen', a.platformName()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    run(python, "-I", "-B", "-c", code, env=env, capture_output=True, cwd="/")
    version = "import sys; from app.__main__ import main; sys.exit(main(['--version']))"
    out = run(python, "-I", "-B", "-c", version, env=env, capture_output=True, cwd="/").stdout
    if out.strip() != f"shieldwright {app_version()}":
        raise SystemExit(f"deb: the staged environment prints {out.strip()!r} for --version")


# --- the other files -------------------------------------------------------------------------------


def gzip_file(data: bytes, target: Path, mtime: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=mtime) as gz:
        gz.write(data)
    target.write_bytes(buf.getvalue())


def install(src: Path, target: Path, mode: int = 0o644) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)
    target.chmod(mode)


def add_files(pkgroot: Path, version: str, epoch: int, pip_python: Path) -> None:
    share = pkgroot / "usr" / "share"
    install(HERE / "shieldwright", pkgroot / "usr" / "bin" / PACKAGE, 0o755)
    install(ROOT / "installer" / f"{APP_ID}.desktop", share / "applications" / f"{APP_ID}.desktop")
    install(ROOT / "installer" / f"{APP_ID}.metainfo.xml", share / "metainfo" / f"{APP_ID}.metainfo.xml")
    icons = ROOT / "resources" / "icons"
    install(icons / f"{APP_ID}.svg", share / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg")
    pngs = sorted((icons / "hicolor").glob(f"*/apps/{APP_ID}.png"))
    if not pngs:
        raise SystemExit("deb: no PNG icons in resources/icons/hicolor (run installer/render_icons.py)")
    for png in pngs:
        install(png, share / "icons" / "hicolor" / png.relative_to(icons / "hicolor"))
    # The man page from the parser the package ships: generated with the staged environment's interpreter.
    page = run(
        pkgroot / PREFIX / "bin" / "python3", "-I", "-B", ROOT / "installer" / "manpage.py",
        capture_output=True, env={"SOURCE_DATE_EPOCH": str(epoch), "PATH": os.environ.get("PATH", "")},
    ).stdout  # fmt: skip
    gzip_file(page.encode("ascii"), share / "man" / "man1" / f"{PACKAGE}.1.gz", epoch)
    doc = share / "doc" / PACKAGE
    doc.mkdir(parents=True, exist_ok=True)
    (doc / "copyright").write_text(copyright_text(pkgroot, epoch))
    gzip_file(changelog_text(version, epoch).encode(), doc / "changelog.Debian.gz", epoch)
    install_guide(doc)
    overrides = HERE / "lintian-overrides"
    if overrides.exists():
        install(overrides, share / "lintian" / "overrides" / PACKAGE)


def install_guide(doc: Path) -> None:
    """docs/user-guide.md (when there is one) and the local files it links to, uncompressed: Help opens
    /usr/share/doc/shieldwright/user-guide.md (app/gui/dialogs/help.py)."""
    guide = ROOT / "docs" / "user-guide.md"
    if not guide.is_file():
        return
    install(guide, doc / guide.name)
    for link in re.findall(r"\]\(\s*<?([^)\s>#]+)", guide.read_text()):
        if "://" in link or link.startswith(("/", "mailto:")):
            continue
        src = (guide.parent / link).resolve()
        if src.is_file() and src.is_relative_to(ROOT / "docs"):
            install(src, doc / src.relative_to(ROOT / "docs"))


def changelog_text(version: str, epoch: int) -> str:
    date = email.utils.formatdate(epoch, usegmt=False, localtime=False).replace("-0000", "+0000")
    return (
        f"{PACKAGE} ({version}) unstable; urgency=medium\n\n"
        f"  * Shieldwright {version.rsplit('-', 1)[0]}, built by installer/deb/build.py: the\n"
        f"    application and its Python dependencies in a private environment under\n"
        f"    /usr/lib/shieldwright.\n\n"
        f" -- {MAINTAINER}  {date}\n"
    )


def copyright_text(pkgroot: Path, epoch: int) -> str:
    """Shieldwright's licence, then each bundled Python distribution's, from its own metadata."""
    years = sorted({_first_commit_year() or time.gmtime(epoch).tm_year, time.gmtime(epoch).tm_year})
    parts = [
        "Shieldwright\n",
        f"Upstream: {HOMEPAGE}\n\n",
        f"Copyright: {'-'.join(map(str, years))} The Shieldwright developers\n",
        "License: GPL-3.0-or-later\n\n",
        "This program is free software: you can redistribute it and/or modify it under the terms of the\n"
        "GNU General Public License as published by the Free Software Foundation, either version 3 of the\n"
        "License, or (at your option) any later version.\n\n"
        "On Debian systems, the complete text of the GNU General Public License version 3 can be found in\n"
        "/usr/share/common-licenses/GPL-3.\n\n",
        "Bundled Python distributions\n",
        "----------------------------\n\n",
        f"/{SITE}\n",
        "holds these distributions from PyPI, each under its own licence; their licence files are in the\n",
        "*.dist-info directories there.\n\n",
    ]
    site = pkgroot / SITE
    for meta in sorted(site.glob("*.dist-info/METADATA")):
        fields = _metadata(meta.read_text(errors="replace"))
        if fields.get("Name", "").lower() == PACKAGE:
            continue
        licence = fields.get("License-Expression") or _short_licence(fields)
        parts.append(f"  {fields.get('Name', meta.parent.name)} {fields.get('Version', '')}: {licence}\n")
    return "".join(parts)


def _first_commit_year() -> int | None:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "log", "--reverse", "--format=%cs"], capture_output=True, text=True
    )
    return int(out.stdout[:4]) if out.returncode == 0 and out.stdout[:4].isdigit() else None


def _metadata(text: str) -> dict[str, str]:
    head = text.split("\n\n", 1)[0]
    fields: dict[str, str] = {}
    classifiers = []
    for line in head.splitlines():
        key, sep, value = line.partition(": ")
        if sep and not line.startswith((" ", "\t")):
            if key == "Classifier" and value.startswith("License ::"):
                classifiers.append(value.split(" :: ")[-1])
            fields.setdefault(key, value.strip())
    if classifiers:
        fields["_classifiers"] = ", ".join(classifiers)
    return fields


def _short_licence(fields: dict[str, str]) -> str:
    value = fields.get("License", "")
    if value and len(value) <= 60 and "\n" not in value:
        return value
    return fields.get("_classifiers") or "see its dist-info directory"


# --- the package -----------------------------------------------------------------------------------


def normalise(pkgroot: Path, epoch: int) -> None:
    """Modes: 0755 directories and /usr/bin, 0644 everything else (the environment holds modules, shared
    objects and data; nothing in it is run directly). mtimes clamped to SOURCE_DATE_EPOCH."""
    for path in [pkgroot, *pkgroot.rglob("*")]:
        if path.is_symlink():
            os.utime(path, (epoch, epoch), follow_symlinks=False)
            continue
        if path.is_dir():
            path.chmod(0o755)
        elif path.parent == pkgroot / "usr" / "bin" or path.parent == pkgroot / "DEBIAN":
            path.chmod(0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644)
        else:
            path.chmod(0o644)
        if path.stat().st_mtime > epoch:
            os.utime(path, (epoch, epoch))


def relative_links(pkgroot: Path) -> None:
    """Absolute links within /usr made relative (the venv's python3.11 -> /usr/bin/python3.11), as Debian
    policy asks; done last, since the staged interpreter needs the absolute link to run."""
    for path in pkgroot.rglob("*"):
        if path.is_symlink() and os.readlink(path).startswith("/usr/"):
            target = os.readlink(path)
            path.unlink()
            path.symlink_to(os.path.relpath(target, "/" + path.parent.relative_to(pkgroot).as_posix()))


def installed_size(pkgroot: Path) -> int:
    """KiB, as dpkg-gencontrol counts: each file rounded up to a KiB, one per directory and link."""
    total = 0
    for path in pkgroot.rglob("*"):
        if path.is_relative_to(pkgroot / "DEBIAN"):
            continue
        total += 1 if path.is_symlink() or path.is_dir() else -(-path.stat().st_size // 1024)
    return total


def write_control(pkgroot: Path, version: str, shlibs: str) -> None:
    depends = (
        [f"python{PY_VERSION}"] + [d.strip() for d in shlibs.split(",") if d.strip()] + list(TOOLS_DEPENDS)
    )
    control = (
        f"Package: {PACKAGE}\n"
        f"Version: {version}\n"
        f"Architecture: {ARCH}\n"
        f"Maintainer: {MAINTAINER}\n"
        f"Installed-Size: {installed_size(pkgroot)}\n"
        f"Depends: {', '.join(dict.fromkeys(depends))}\n"
        f"Recommends: {', '.join(TOOLS_RECOMMENDS)}\n"
        "Section: admin\n"
        "Priority: optional\n"
        f"Homepage: {HOMEPAGE}\n"
        f"Description: {DESCRIPTION}\n"
    )
    debian = pkgroot / "DEBIAN"
    (debian / "control").write_text(control)
    sums = []
    for path in sorted(pkgroot.rglob("*")):
        if path.is_file() and not path.is_symlink() and not path.is_relative_to(debian):
            sums.append(
                f"{hashlib.md5(path.read_bytes()).hexdigest()}  {path.relative_to(pkgroot).as_posix()}\n"
            )
    (debian / "md5sums").write_text("".join(sums))
    for script in ("postinst", "prerm"):
        install(HERE / script, debian / script, 0o755)


def build(out: Path) -> Path:
    started = time.monotonic()
    if not Path(PYTHON).exists():
        raise SystemExit(f"deb: {PYTHON} is missing: the package is for Debian 12, whose python3 is 3.11")
    version = f"{app_version()}-{DEBIAN_REVISION}"
    epoch = source_date_epoch()
    work = ROOT / "build" / "deb"
    shutil.rmtree(work, ignore_errors=True)
    (work / "debian").mkdir(parents=True)
    # dpkg-shlibdeps reads debian/control and wants the binaries inside debian/PACKAGE/ with a DEBIAN dir.
    (work / "debian" / "control").write_text(
        f"Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: {ARCH}\n"
    )
    pkgroot = work / "debian" / PACKAGE
    (pkgroot / "DEBIAN").mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="deb.", dir=work) as tmp_name:
        tmp = Path(tmp_name)
        log("building the wheel (installer/dist.py)")
        _sdist, wheel = dist.build(tmp / "dist")
        pip_python = dist.build_env(ROOT / "build" / "dist-env")
        log(f"installing {wheel.name} and its dependencies into /{PREFIX}")
        site = make_environment(pkgroot, wheel, pip_python, tmp)
    removed = prune_pyside(site)
    log(f"left out {len(removed)} PySide6 developer tools and unused Qt parts")
    log(f"stripped {strip(site)} compiled files")
    smoke_test(pkgroot)
    add_files(pkgroot, version, epoch, pip_python)
    normalise(pkgroot, epoch)
    analysed, optional = analysed_files(site)
    log(
        f"dpkg-shlibdeps over {len(analysed)} compiled files ({len(optional)} optional Qt files not analysed)"
    )
    shlibs = shlibs_depends(work, analysed)
    relative_links(pkgroot)
    write_control(pkgroot, version, shlibs)
    out.mkdir(parents=True, exist_ok=True)
    deb = out / f"{PACKAGE}_{version}_{ARCH}.deb"
    log(f"packing {deb.name}")
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    run("dpkg-deb", "--root-owner-group", "-Zxz", "--build", pkgroot, deb, env=env, capture_output=True)
    log(f"{deb} ({deb.stat().st_size / 2**20:.1f} MiB, installed {installed_size(pkgroot) / 1024:.0f} MiB) "
        f"in {time.monotonic() - started:.0f} s")  # fmt: skip
    return deb


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description="Build the Debian package of Shieldwright.")
    cli.add_argument("--out", type=Path, default=ROOT / "dist", help="output directory (default: dist/)")
    args = cli.parse_args(argv)
    print(build(args.out.resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
