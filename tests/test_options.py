"""One table (issue 13, done-means 4): every recipe key of ``app.template.options.OPTIONS``, walked.

For each entry: the recipe file holds exactly the table's keys; the ``shieldwright build`` flag is the
entry's own (name, help, choices), and no ``build`` option that sets a choice lives outside the table; a
value set in a recipe survives recipe → :func:`equivalent_argv` → the ``build`` parser →
:func:`effective_recipe`; and the Review page's "equivalent command" is that very argv.
"""

from __future__ import annotations

import argparse
import copy
import shlex
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from app.cli import build_parser
from app.commands.build import effective_recipe
from app.template.options import OPTIONS, SECTIONS, SHORT_FLAGS, Option, equivalent_argv, flagged
from app.template.recipe import (
    BootOptions,
    CatalogOptions,
    EncryptionOptions,
    OutputOptions,
    PcrOptions,
    Recipe,
    SecretSource,
    SigningOptions,
    UkiOptions,
    default_recovery_key_file,
)
from app.template.recipe_file import load_recipe, recipe_to_dict, save_recipe

#: ``build`` options that are not recipe choices (how to run, not what to build).
NOT_CHOICES = {"-h", "--help", "--json", "--allow-private-inputs", "--save-recipe", "--force"}


def build_subparser() -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["build"]


def parse(argv: list[str]) -> Recipe:
    """What ``shieldwright build`` makes of ``argv`` (``["shieldwright", "build", …]``)."""
    assert argv[:2] == ["shieldwright", "build"]
    return effective_recipe(build_parser().parse_args(argv[1:]))


def base_recipe(tmp: Path) -> Recipe:
    """The required keys set (``--protect`` too: no image inspection), everything else at its default."""
    return Recipe(
        base_image=tmp / "base.img",
        protect=[2],
        signing=SigningOptions(uefi_cert=tmp / "uefi.crt"),
        uki=UkiOptions(kernel="2:/vmlinuz"),
        encryption=EncryptionOptions(),
        catalog=CatalogOptions("Web server", "1.0.0.0"),
        boot=BootOptions(),
        output=OutputOptions(tmp / "out" / "web.raw", "raw"),
    )


def full_recipe(tmp: Path) -> Recipe:
    """Every key of the table with a value (none left out of the file)."""
    return Recipe(
        base_image=tmp / "base.img",
        protect=[2, 3],
        signing=SigningOptions(
            uefi_cert=tmp / "uefi.crt",
            uefi_key=tmp / "uefi.key",
            catalog_cert=tmp / "vsc.crt",
            catalog_key=tmp / "vsc.key",
            key_passphrase=SecretSource.file(tmp / "key-passphrase"),
            catalog_key_passphrase=SecretSource("env", "VSC_KEY_PASSPHRASE"),
        ),
        uki=UkiOptions(
            source="existing",
            existing_action="replace",
            existing_uki="1:/EFI/Linux/old.efi",
            kernel="2:/vmlinuz-6.1",
            initrds=["2:/initrd.img-6.1"],
            cmdline="console=ttyS0 quiet",
            os_release="ID=test\n",
            stub=tmp / "linuxx64.efi.stub",
        ),
        encryption=EncryptionOptions(
            partitions=[3],
            sector_size=512,
            kdf="pbkdf2",
            iter_time_ms=1500,
            kdf_params={"iterations": 1000, "hash": "sha256"},
            passphrase=SecretSource.file(tmp / "provisioning"),
            recovery_key_file=tmp / "recovery.txt",
            sparse_ciphertext=True,
        ),
        catalog=CatalogOptions("Web server", "2.1.0.7", 4096),
        boot=BootOptions(uki_id="web", vendor_dir="fedora", install_removable=True),
        output=OutputOptions(tmp / "out" / "web.vhdx", "vhdx"),
        pcr=PcrOptions(firmware_vars=tmp / "target-vars.fd", pcrs=[7, 11], bank="sha384"),
    )


def other_value(opt: Option, current: Any, tmp: Path) -> Any:
    """A value for ``opt`` that is neither its default nor ``current``, as a recipe holds it."""
    if opt.choices is not None:
        return next(c for c in opt.choices if c not in (opt.default, current))
    if opt.kind == "path":
        return tmp / "other" / f"{opt.key}.file"
    if opt.kind == "secret":
        return SecretSource.file(tmp / "other" / f"{opt.key}.secret")
    if opt.key == "pcr.pcrs":
        return [4, 11]
    if opt.kind == "int_list":
        return [3, 5]
    if opt.kind == "bool":
        return not opt.default
    if opt.kind == "int":
        return (opt.default or 0) + 7
    return {"catalog.version": "2.3.4.5", "uki.cmdline": "console=ttyS0 quiet"}.get(
        opt.key, f"other {opt.name}"
    )


# -- (a) the recipe file ----------------------------------------------------------------------------------


def test_a_full_recipe_file_holds_exactly_the_tables_keys(tmp_path: Path) -> None:
    recipe = full_recipe(tmp_path)
    data = recipe_to_dict(recipe, tmp_path)
    keys = {k for k, v in data.items() if k not in SECTIONS}
    keys |= {f"{section}.{name}" for section in SECTIONS for name in data.get(section, {})}
    # The three firmware profiles exclude each other: the full recipe names one.
    assert keys == {o.key for o in OPTIONS} - {"pcr.firmware_log", "pcr.firmware_certs"}
    assert len(OPTIONS) == len({o.key for o in OPTIONS})  # one entry per key
    # Every value comes back from the file as it went in.
    assert load_recipe(save_recipe(recipe, tmp_path / "full.toml")) == recipe


# -- (b) the flags --------------------------------------------------------------------------------------


@pytest.mark.parametrize("opt", flagged(), ids=lambda o: o.key)
def test_each_flag_is_its_entrys(opt: Option) -> None:
    parser = build_subparser()
    action = next((a for a in parser._actions if opt.flag in a.option_strings), None)
    assert action is not None, f"build has no {opt.flag}"
    assert action.help == opt.help and action.dest == opt.dest
    short = SHORT_FLAGS.get(opt.flag or "")
    assert set(action.option_strings) == {opt.flag} | ({short} if short else set())
    if opt.choices is not None:
        assert tuple(action.choices or ()) == opt.choices


def test_no_build_option_sets_a_choice_outside_the_table() -> None:
    flags = {s for a in build_subparser()._actions for s in a.option_strings}
    from_table = {o.flag for o in flagged()} | set(SHORT_FLAGS.values())
    assert flags - NOT_CHOICES == from_table


# -- (c) recipe → equivalent command → build → the same recipe -----------------------------------------


@pytest.mark.parametrize("opt", flagged(), ids=lambda o: o.key)
def test_a_changed_key_survives_the_equivalent_command(opt: Option, tmp_path: Path) -> None:
    recipe = base_recipe(tmp_path)
    before = opt.get(recipe)
    opt.set(recipe, other_value(opt, before, tmp_path))
    assert opt.get(recipe) != before and opt.get(recipe) != opt.default
    argv = equivalent_argv(recipe)
    assert opt.flag in argv
    built = parse(argv)
    assert opt.get(built) == opt.get(recipe)
    for other in flagged():  # and nothing else moved
        assert other.get(built) == other.get(recipe), other.key


def test_every_flag_at_once_survives_the_equivalent_command(tmp_path: Path) -> None:
    recipe = full_recipe(tmp_path)
    built = parse(equivalent_argv(recipe))
    for opt in flagged():
        assert opt.get(built) == opt.get(recipe), opt.key


def state_for(recipe: Recipe) -> Any:
    """A wizard state holding ``recipe``'s choices, the way the pages fill it."""
    from app.gui.state import (
        CatalogChoice,
        EncryptionChoice,
        OutputChoice,
        SigningChoice,
        UkiChoice,
        WizardState,
    )

    r = copy.deepcopy(recipe)
    state = WizardState(image_path=r.base_image, protected=set(r.protect))
    state.uefi_signing = SigningChoice(r.signing.uefi_cert, r.signing.uefi_key)
    state.catalog_same_as_uefi = r.signing.catalog_cert is None
    if r.signing.catalog_cert is not None:
        state.catalog_signing = SigningChoice(r.signing.catalog_cert, r.signing.catalog_key)
    state.uki = UkiChoice(r.uki)
    state.encryption = EncryptionChoice(r.encryption, recovery_key=r.encryption.recovery_key_file is not None)
    state.catalog = CatalogChoice(r.catalog)
    state.boot = r.boot
    state.pcr = r.pcr
    state.output = OutputChoice(r.output)
    return state


def test_the_review_pages_command_is_the_tables_argv(qtbot, tmp_path: Path) -> None:
    from app.gui.tasks import TaskRunner
    from wizard_pages.review import ReviewPage

    recipe = full_recipe(tmp_path)
    # What a wizard can say: a replay asks for the signing key's passphrase, and writes the recovery key
    # beside the output.
    recipe.signing.key_passphrase = SecretSource.prompt()
    recipe.signing.catalog_key_passphrase = None
    recipe.encryption.recovery_key_file = default_recovery_key_file(recipe.output.path)
    state = state_for(recipe)
    assert state.recipe() == recipe

    executor = ThreadPoolExecutor(max_workers=1)
    runner = TaskRunner(executor)
    try:
        page = ReviewPage(state, runner)
        qtbot.addWidget(page)
        argv = shlex.split(page.command_line())
        assert argv == equivalent_argv(recipe)
        built = parse(argv)
        for opt in flagged():
            assert opt.get(built) == opt.get(recipe), opt.key
        # Only the saved recipe replays what no flag says, and the page says which.
        page.command_button.setChecked(True)
        for key in ("uki.kernel", "uki.os_release", "encryption.kdf_params", "catalog.block_size"):
            assert key in page.command_note.text()
    finally:
        runner.shutdown()
        executor.shutdown(wait=True)
