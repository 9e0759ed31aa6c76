"""The foundation: environment settings, device precision, eval mode, atomic files and run locks."""
import multiprocessing as mp
import os
import time

import pytest
import torch
import torch.nn as nn

from course_lib import files, runtime, settings


# ----------------------------------------------------------------------------------------------------------------
# Precision: bf16 only where the GPU computes it natively

@pytest.mark.parametrize("capability,dtype,scaler", [((7, 5), torch.float16, True), ((7, 0), torch.float16, True),
                                                    ((8, 0), torch.bfloat16, False), ((9, 0), torch.bfloat16, False)])
def test_precision_follows_the_compute_capability(monkeypatch, capability, dtype, scaler):
    # A T4 (7.5) says is_bf16_supported() == True through emulation; the course must not believe it.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    p = runtime.precision(torch.device("cuda"))
    assert (p.dtype, p.needs_scaler) == (dtype, scaler)
    assert runtime.precision(torch.device("cuda"), enabled=False).dtype is None


def test_cpu_stays_in_float32():
    p = runtime.precision(torch.device("cpu"))
    assert p.dtype is None and p.scaler(torch.device("cpu")) is None and p.name == "float32"
    with p.autocast(torch.device("cpu"))():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_eval_mode_restores_modes_even_after_an_exception():
    a, b = nn.Dropout().train(), nn.Dropout().eval()
    with pytest.raises(KeyError):
        with runtime.eval_mode(a, b, None):
            assert not a.training and not b.training and not torch.is_grad_enabled()
            raise KeyError("boom")
    assert a.training and not b.training and torch.is_grad_enabled()


# ----------------------------------------------------------------------------------------------------------------
# Settings from the environment

@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("YES", True), ("on", True), ("0", False),
                                            ("off", False), ("no", False), ("", False), ("False", False)])
def test_course_offline_values(monkeypatch, value, expected):
    monkeypatch.setenv("COURSE_OFFLINE", value)
    assert settings.offline() is expected


def test_unclear_flags_and_file_folders_are_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_OFFLINE", "maybe")
    with pytest.raises(settings.SettingError, match="COURSE_OFFLINE='maybe'.*Set it to 1"):
        settings.offline()
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    for name, read in [("COURSE_DATA_ROOT", settings.data_root), ("COURSE_WORKDIR", settings.workdir)]:
        monkeypatch.setenv(name, str(a_file))
        with pytest.raises(settings.SettingError, match=f"{name} points at .*a file, not a folder"):
            read()
        monkeypatch.setenv(name, str(tmp_path / "new"))
        assert read() == tmp_path / "new"                  # a folder that does not exist yet is fine


def test_a_dangling_link_or_a_trailing_newline_in_a_folder_setting(monkeypatch, tmp_path):
    link = tmp_path / "work"
    link.symlink_to(tmp_path / "gone")
    for name, read in [("COURSE_WORKDIR", settings.workdir), ("COURSE_DATA_ROOT", settings.data_root)]:
        monkeypatch.setenv(name, str(link))
        with pytest.raises(settings.SettingError, match=f"{name} points at .*work, a symbolic link to .*gone, which "
                                                        "does not exist"):
            read()
        monkeypatch.setenv(name, f"{tmp_path / 'data'}\n")                # e.g. pasted from a file
        assert read() == tmp_path / "data"
    monkeypatch.setenv("COURSE_DATA_ROOT", " \n")                         # only whitespace: unset
    monkeypatch.setenv("COURSE_WORKDIR", str(tmp_path))
    assert settings.data_root() == tmp_path / "data"


def test_notebooks_find_the_data_the_command_line_downloaded(monkeypatch, tmp_path):
    """Run from the repository's notebooks/ folder, the data folder is the root's data/, like the work folder."""
    (tmp_path / "_config.yml").write_text("title: x")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.delenv("COURSE_DATA_ROOT", raising=False)
    monkeypatch.delenv("COURSE_WORKDIR", raising=False)
    for here in (tmp_path, tmp_path / "notebooks"):
        monkeypatch.chdir(here)
        assert settings.workdir().resolve() == tmp_path and settings.data_root().resolve() == tmp_path / "data"


# ----------------------------------------------------------------------------------------------------------------
# Files: atomic writes, named corrupt files, locks

def test_a_damaged_checkpoint_or_record_names_itself(tmp_path):
    path = tmp_path / "run.pt"
    files.atomic_torch_save({"w": torch.ones(100)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])               # cut short, as a kill during a plain write would
    with pytest.raises(files.CorruptFileError, match=r"run.pt is damaged.*delete .*run.pt"):
        files.safe_torch_load(path)
    record = tmp_path / "r.json"
    record.write_text("")
    with pytest.raises(files.CorruptFileError, match="r.json is damaged.*not valid JSON"):
        files.read_json(record)
    moved = files.quarantine(record)
    assert not record.exists() and moved.exists() and "corrupt" in moved.name


def test_atomic_writes_leave_no_partial_file_when_interrupted(tmp_path):
    path = tmp_path / "x.json"
    files.atomic_write_json(path, {"a": 1})

    class Boom:
        def __reduce__(self):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.atomic_torch_save({"bad": Boom()}, path)
    assert files.read_json(path) == {"a": 1}               # the old file is intact ...
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]   # ... and no temporary file is left


def _writer(path, value, n):
    for _ in range(n):
        files.atomic_torch_save({"meta": value, "weights": torch.full((20_000,), float(value))}, path)


def test_two_writers_never_give_a_reader_a_mixed_or_partial_checkpoint(tmp_path):
    path = tmp_path / "race.pt"
    _writer(path, 0, 1)
    ctx = mp.get_context("fork")
    writers = [ctx.Process(target=_writer, args=(path, v, 60)) for v in (1, 2)]
    for w in writers:
        w.start()
    bad = loads = 0
    while any(w.is_alive() for w in writers) or loads < 50:
        state = files.safe_torch_load(path)
        loads += 1
        bad += not bool((state["weights"] == float(state["meta"])).all())
    for w in writers:
        w.join()
    assert bad == 0 and loads >= 50
    assert [p.name for p in tmp_path.iterdir()] == ["race.pt"]        # unique temporary names, all cleaned up


def _hold_lock(path, seconds, started):
    with files.file_lock(path, "the test run"):
        started.set()
        time.sleep(seconds)


def test_a_second_process_waits_for_the_lock_and_says_why(tmp_path, capsys):
    ctx = mp.get_context("fork")
    started = ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path / "run", 1.0, started))
    holder.start()
    started.wait(10)
    t0 = time.perf_counter()
    with files.file_lock(tmp_path / "run", "the test run"):
        waited = time.perf_counter() - t0
    holder.join()
    assert waited > 0.5
    assert "the test run is in progress elsewhere (pid" in capsys.readouterr().out
    assert not os.path.exists(tmp_path / "run.lock")                 # nothing left behind


def test_the_lock_file_is_never_followed_through_a_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    os.symlink(victim, tmp_path / "run.lock")
    with pytest.raises(OSError):
        with files.file_lock(tmp_path / "run", "the test run"):
            pass
    assert victim.read_text() == "keep me"


def _count_holders(path, counter, lock, n):
    for _ in range(n):
        with files.file_lock(path, "the race"):
            with lock:
                counter.value += 1
                assert counter.value == 1, "two processes held the lock at once"
            time.sleep(0.001)
            with lock:
                counter.value -= 1


def test_the_lock_excludes_while_its_file_comes_and_goes(tmp_path):
    """Holders remove the lock file on release; waiters that woke on a removed file retry: never two holders."""
    ctx = mp.get_context("fork")
    counter, lock = ctx.Value("i", 0), ctx.Lock()
    workers = [ctx.Process(target=_count_holders, args=(tmp_path / "run", counter, lock, 40)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert all(w.exitcode == 0 for w in workers)
    assert not os.path.exists(tmp_path / "run.lock")
