import os

from lsps.node.startup import flag_set

HOME = "/home/u"


def reader(files):
    return lambda path: files.get(path)


def test_command_line_flag():
    assert flag_set("lsp-service", ["lightningd", "--lsp-service"], reader({}), HOME)
    assert not flag_set("lsp-service", ["lightningd", "--lsp-service-x"], reader({}), HOME)
    assert not flag_set("lsp-service", ["lightningd"], reader({}), HOME)


def test_default_config_files():
    files = {f"{HOME}/.lightning/config": "# lsp-service\nalias=x\n"}
    assert not flag_set("lsp-service", ["lightningd"], reader(files), HOME)
    files[f"{HOME}/.lightning/bitcoin/config"] = "  lsp-service  # yes\n"
    assert flag_set("lsp-service", ["lightningd"], reader(files), HOME)


def test_network_and_lightning_dir():
    files = {"/ln/regtest/config": "lsp-service\n"}
    assert flag_set("lsp-service", ["lightningd", "--lightning-dir=/ln", "--network=regtest"],
                    reader(files), HOME)
    assert flag_set("lsp-service", ["lightningd", "--lightning-dir", "/ln", "--regtest"],
                    reader(files), HOME)
    assert not flag_set("lsp-service", ["lightningd", "--lightning-dir=/ln"], reader(files), HOME)


def test_conf_and_includes_without_loops():
    files = {
        "/etc/ln.conf": "include more.conf\ninclude /etc/ln.conf\n",
        "/etc/more.conf": "lsp-service\n",
    }
    assert flag_set("lsp-service", ["lightningd", "--conf=/etc/ln.conf"], reader(files), HOME)
    files["/etc/more.conf"] = "lsp-service=false-looking-value\n"
    assert not flag_set("lsp-service", ["lightningd", "--conf=/etc/ln.conf"],
                        reader(files), HOME)


def test_relative_conf_is_under_lightning_dir():
    files = {os.path.join("/ln", "c.conf"): "lsp-service\n"}
    assert flag_set("lsp-service", ["lightningd", "--lightning-dir=/ln", "--conf=c.conf"],
                    reader(files), HOME)


def test_relative_lightning_dir_is_under_lightningd_cwd():
    files = {"/srv/node/ln/config": "lsp-service\n"}
    assert flag_set("lsp-service", ["lightningd", "--lightning-dir=ln"], reader(files), HOME,
                    cwd="/srv/node")
