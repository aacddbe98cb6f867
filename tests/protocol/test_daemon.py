"""zcqrsd itself: the log level, the domain it loads, and the domain a data
dir was made with (settings log-level, domain, allow-domain-change).

The `counter` domain is the build's plugins/counter.so (examples/counter).
"""

import os
import re
import shutil
import subprocess

import pytest

from conftest import REPLY_TIMEOUT, ZCQRSD, Daemon, uniq

DEBUG_LINE = re.compile(r"^(\S+: )?D: ", re.M)
INFO_LINE = re.compile(r"^(\S+: )?[IN]: ", re.M)
WARN_LINE = re.compile(r"^(\S+: )?W: ", re.M)


def run_zcqrsd(*args, env=None):
    """zcqrsd that is expected to exit by itself (a refusal): its result."""
    return subprocess.run([ZCQRSD, "--http", "none", "--command", "tcp://127.0.0.1:*",
                           "--events", "tcp://127.0.0.1:*", "--query", "tcp://127.0.0.1:*",
                           *args], capture_output=True, text=True, timeout=60,
                          env=env, stdin=subprocess.DEVNULL)


def stopped(daemon):
    """Stop it (must exit 0) and give its stderr: this run's only (the
    conftest appends every run on one data dir to one file)."""
    before = len(daemon.stderr_before)
    assert daemon.stop() == 0, daemon.stderr()
    return daemon.stderr()[before:]


def start(factory, data=None, extra=()):
    """factory(...), remembering the stderr of earlier runs on the same dir."""
    earlier = ""
    if data is not None and os.path.exists(str(data) + ".stderr"):
        with open(str(data) + ".stderr", encoding="utf-8", errors="replace") as f:
            earlier = f.read()
    daemon = factory(data, extra=list(extra))
    daemon.stderr_before = earlier
    return daemon


def ready_line(daemon):
    return next(line for line in daemon.stdout_lines if "ready" in line)


# --------------------------------------------------------------------------
# log-level


def test_log_level_debug_shows_settings_and_the_plugin(daemon_factory):
    d = start(daemon_factory, extra=["--log-level", "debug"])
    err = stopped(d)
    assert DEBUG_LINE.search(err), err
    assert "setting log-level = debug" in err
    assert re.search(r"domain bank from .*bank\.so|domain bank built into zcqrsd", err), err
    assert "stopped cleanly" in err


def test_verbose_is_debug(daemon_factory):
    err = stopped(start(daemon_factory, extra=["--verbose"]))
    assert "setting log-level = debug" in err and DEBUG_LINE.search(err)


def test_log_level_info_is_the_default(daemon_factory):
    err = stopped(start(daemon_factory))
    assert not DEBUG_LINE.search(err), err
    assert "stopped cleanly" in err


def test_log_level_error_keeps_stderr_quiet(daemon_factory):
    d = start(daemon_factory, extra=["--log-level", "error"])
    c = d.client()
    key = uniq()
    assert c.open(key)["ok"] is True
    c.close()
    err = stopped(d)
    assert err == "", err


def test_log_level_warn_shows_warnings_only(daemon_factory, tmp_path):
    """A domain change is a warning: seen at warn, not at error."""
    data = tmp_path / "d"
    stopped(start(daemon_factory, data))                              # bank
    changed = start(daemon_factory, tmp_path / "d", extra=["--domain", "counter",
                                                    "--allow-domain-change",
                                                    "--log-level", "warn"])
    err = stopped(changed)
    assert WARN_LINE.search(err) and "held domain 'bank', now 'counter'" in err, err
    assert not DEBUG_LINE.search(err) and not INFO_LINE.search(err), err
    assert "stopped cleanly" not in err                         # an info line
    again = start(daemon_factory, tmp_path / "d", extra=["--domain", "bank",
                                                  "--allow-domain-change",
                                                  "--log-level", "error"])
    assert stopped(again) == ""


def test_log_level_from_the_config_file_and_flags_after_it(daemon_factory, tmp_path):
    config = tmp_path / "zcqrsd.conf"
    config.write_text("log-level = error\n")
    quiet = start(daemon_factory, extra=["--config", str(config)])
    assert stopped(quiet) == ""
    loud = start(daemon_factory, extra=["--config", str(config), "--log-level", "debug"])
    assert "setting log-level = debug" in stopped(loud)


def test_bad_log_level_is_refused(tmp_path):
    r = run_zcqrsd("--data", str(tmp_path / "d"), "--log-level", "chatty")
    assert r.returncode == 2
    assert "log-level" in r.stderr and "chatty" in r.stderr and "debug" in r.stderr
    config = tmp_path / "bad.conf"
    config.write_text("log-level = loud\n")
    r = run_zcqrsd("--data", str(tmp_path / "d"), "--config", str(config))
    assert r.returncode == 2 and "loud" in r.stderr


# --------------------------------------------------------------------------
# the domain of a data dir


def test_data_dir_of_another_domain_is_refused_then_accepted_with_the_flag(daemon_factory,
                                                                           tmp_path):
    data = tmp_path / "d"
    bank = start(daemon_factory, data)
    c = bank.client()
    key = uniq()
    assert c.open(key)["ok"] is True
    c.close()
    stopped(bank)

    r = run_zcqrsd("--data", str(data), "--domain", "counter")
    assert r.returncode == 2, r
    assert "'bank'" in r.stderr and "'counter'" in r.stderr, r.stderr
    assert "allow-domain-change" in r.stderr
    assert "ready" not in r.stdout

    counter = start(daemon_factory, data, extra=["--domain", "counter", "--allow-domain-change"])
    assert "domain counter" in ready_line(counter)
    c = counter.client()
    reply = c.send("counter", "k", "add", {"n": 5})
    assert reply["ok"] is True and reply["position"] == 2     # after the bank's event
    assert c.get("counters", "k", min_position=reply["position"])["row"]["total"] == 5
    c.close()
    stopped(counter)

    # the dir is the counter's now: counter opens it plainly, bank is refused
    stopped(start(daemon_factory, data, extra=["--domain", "counter"]))
    r = run_zcqrsd("--data", str(data), "--domain", "bank")
    assert r.returncode == 2 and "'counter'" in r.stderr and "'bank'" in r.stderr


def test_same_domain_reopens_and_a_new_dir_takes_any(daemon_factory, tmp_path):
    data = tmp_path / "d"
    stopped(start(daemon_factory, data, extra=["--domain", "counter"]))
    d = start(daemon_factory, data, extra=["--domain", "counter"])
    assert "domain counter" in ready_line(d)
    stopped(d)


def test_allow_domain_change_in_the_config_file(daemon_factory, tmp_path):
    data = tmp_path / "d"
    stopped(start(daemon_factory, data))
    config = tmp_path / "change.conf"
    config.write_text("domain = counter\nallow-domain-change = true\n")
    d = start(daemon_factory, data, extra=["--config", str(config)])
    assert "domain counter" in ready_line(d)
    stopped(d)
    config.write_text("allow-domain-change = perhaps\n")
    r = run_zcqrsd("--data", str(data), "--config", str(config))
    assert r.returncode == 2 and "perhaps" in r.stderr


# --------------------------------------------------------------------------
# the domain setting and the plugin lookup


def test_domain_from_the_config_file(daemon_factory, tmp_path):
    config = tmp_path / "counter.conf"
    config.write_text("# the counter example\nzcqrs\n    domain = counter\n")
    d = start(daemon_factory, extra=["--config", str(config)])
    assert "domain counter" in ready_line(d)
    c = d.client()
    reply = c.send("counter", "k", "add", {"n": 2})
    assert reply["ok"] is True
    c.close()
    stopped(d)
    # a flag after the file wins
    d = start(daemon_factory, extra=["--config", str(config), "--domain", "bank"])
    assert "domain bank" in ready_line(d)


def test_unknown_domain_names_every_path_looked_in(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    env = dict(os.environ, ZCQRS_PLUGIN_DIR=str(plugins))
    r = run_zcqrsd("--data", str(tmp_path / "d"), "--domain", "nosuch", env=env)
    assert r.returncode == 2
    looked = [line.strip() for line in r.stderr.splitlines() if line.startswith("  ")]
    assert looked[0] == str(plugins / "nosuch.so"), r.stderr
    build_plugins = os.path.join(os.path.dirname(os.path.realpath(ZCQRSD)), "plugins")
    assert os.path.join(build_plugins, "nosuch.so") in looked, r.stderr
    assert len(looked) >= 3 and all(path.endswith("/nosuch.so") for path in looked)
    assert "'nosuch'" in r.stderr and "ZCQRS_PLUGIN_DIR" in r.stderr
    assert not os.path.exists(tmp_path / "d")        # refused before the data dir


def test_domain_plugin_that_does_not_load_says_why(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken.so").write_text("not a shared object")
    env = dict(os.environ, ZCQRS_PLUGIN_DIR=str(plugins))
    r = run_zcqrsd("--data", str(tmp_path / "d"), "--domain", "broken", env=env)
    assert r.returncode == 2
    assert str(plugins / "broken.so") in r.stderr and "cannot load" in r.stderr
    r = run_zcqrsd("--data", str(tmp_path / "d"), "--domain", str(tmp_path / "absent.so"))
    assert r.returncode == 2 and "absent.so" in r.stderr


INCLUDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "engine",
                       "include")
PLUGIN_SOURCE = """
#include <zcqrs.h>
static const zcq_aggregate_def_t *const s_aggregates[] = { NULL };
static const zcq_projection_def_t *const s_projections[] = { NULL };
static const zcq_domain_t s_domain = { "old", s_aggregates, s_projections };
__attribute__ ((visibility ("default"))) const zcq_domain_t *zcq_domain_plugin (void);
const zcq_domain_t *zcq_domain_plugin (void) { return &s_domain; }
%s
"""


def build_plugin(tmp_path, name, extra):
    """A plugin that defines its entry by hand, as one built against an
    older header did, plus extra C."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        pytest.skip("no C compiler to build a test plugin")
    source = tmp_path / (name + ".c")
    source.write_text(PLUGIN_SOURCE % extra)
    target = tmp_path / (name + ".so")
    subprocess.run([compiler, "-shared", "-fPIC", "-I", INCLUDE, str(source), "-o", str(target)],
                   check=True, capture_output=True)
    return target


def test_a_plugin_of_another_domain_abi_is_refused(tmp_path):
    """A plugin built against another layout of the domain structs would be
    read wrongly: it is refused, with what to do."""
    older = build_plugin(tmp_path, "older", "")
    r = run_zcqrsd("--data", str(tmp_path / "d"), "--domain", str(older))
    assert r.returncode == 2, r
    assert "built against an older zcqrs" in r.stderr and "rebuild it" in r.stderr, r.stderr
    other = build_plugin(tmp_path, "other", "unsigned zcq_domain_plugin_abi (void) "
                                            "{ return ZCQ_DOMAIN_ABI + 7; }")
    r = run_zcqrsd("--data", str(tmp_path / "d"), "--domain", str(other))
    assert r.returncode == 2, r
    assert "built for domain ABI" in r.stderr and "rebuild it" in r.stderr, r.stderr
    # plugins built with ZCQ_DOMAIN_PLUGIN carry the ABI and load: every
    # test of the bank, counter and inventory plugins shows it


# --------------------------------------------------------------------------
# examples/zcqrsd.conf


EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                       "zcqrsd.conf")
SETTING = re.compile(r"^#([a-z][a-z0-9-]*) = (.*)$")


def test_example_config_names_every_setting_and_loads(daemon_factory, tmp_path):
    with open(EXAMPLE) as f:
        example = dict(m.groups() for m in map(SETTING.match, f.read().splitlines()) if m)
    # as shipped (all commented out) it loads; the debug log lists every setting
    d = start(daemon_factory, extra=["--config", EXAMPLE, "--log-level", "debug"])
    settings = dict(re.findall(r"setting (\S+) = (.*)", stopped(d)))
    assert set(example) == set(settings), set(example) ^ set(settings)
    # uncommented, as a single node on this test's dir and ports, it runs
    # (the cluster settings would join a ZooKeeper, and the suite picks the
    # write plan: left out)
    left_out = {"data", "command", "events", "query", "cluster", "group", "role", "views",
                "replication", "zk-session-ms", "write-plan", "http"}
    config = tmp_path / "uncommented.conf"
    config.write_text("".join("%s = %s\n" % (name, value) for name, value in example.items()
                              if name not in left_out))
    d = start(daemon_factory, extra=["--config", str(config)])
    for name in example:
        if name not in left_out and name not in ("shards", "log-level"):
            assert settings[name] == example[name], (name, settings[name], example[name])
    assert "domain bank" in ready_line(d)
    stopped(d)
