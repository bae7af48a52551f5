"""tools/web_demo.py: ``--host`` (warning off loopback, the bound host in the Host allow-list) and
the downloads of a result's label PNG and probabilities (the bytes DeCLIPInferencer.save writes)."""
import base64
import io
import json
import socket
import threading
import types
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest
from chromium_helpers import chromium_driver
from PIL import Image
from tf_helpers import load_tool

web_demo = load_tool('web_demo')
FAST = ['test_pipeline.1.scale=(4096,64)', 'model.test_cfg.crop_size=64',
        'model.test_cfg.stride=48']


pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


def photo(h=45, w=70):
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def data_url(img):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format='PNG')
    return 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode()


def serve(argv):
    srv, app = web_demo.make_server(web_demo.parse_args(argv))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, app


def get(url, host=None):
    req = urllib.request.Request(url, headers={'Host': host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def post(url, payload):
    req = urllib.request.Request(url + '/segment', data=json.dumps(payload).encode(),
                                 headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


@pytest.fixture(scope='module')
def server():
    srv, app = serve(['--port', '0', '--cfg-options', *FAST])
    yield f'http://127.0.0.1:{srv.server_address[1]}', app
    srv.shutdown()
    srv.server_close()


def npz_arrays(raw):
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize('mode', ['benchmark', 'quick'])
def test_downloads_are_the_inferencers_files(server, tmp_path, mode):
    from declip_mm.apis import DeCLIPInferencer
    from declip_mm.apis.result_files import read_label_png
    url, app = server
    classes = 'sky; grass, lawn; rock'
    res = post(url, dict(image=data_url(photo()), classes=classes, mode=mode, prob_thd=0.34))
    assert res['downloads'] == {'labels': f"/download/{res['id']}/labels.png",
                                'probs': f"/download/{res['id']}/probs.npz"}
    status, labels_png, headers = get(url + res['downloads']['labels'])
    assert status == 200 and headers['Content-Type'] == 'image/png'
    assert headers['Content-Disposition'] == f'attachment; filename="declip_{res["id"]}_labels.png"'
    status, probs_npz, headers = get(url + res['downloads']['probs'])
    assert status == 200 and 'probs.npz' in headers['Content-Disposition']
    # the same request through the inferencer, written by DeCLIPInferencer.save
    direct = app.inferencer(photo(), classes=classes, mode=None if mode == 'benchmark' else 'whole',
                            prob_thd=0.34)
    files = DeCLIPInferencer.save(direct, str(tmp_path / mode))
    with open(files['labels'], 'rb') as f:
        assert labels_png == f.read()
    with Image.open(io.BytesIO(labels_png)) as im:
        assert im.mode in ('I;16', 'I;16B', 'I') and im.size == (70, 45)
    assert np.array_equal(read_label_png(io.BytesIO(labels_png)), direct.labels)
    with open(files['probs'], 'rb') as f:
        want = npz_arrays(f.read())
    got = npz_arrays(probs_npz)
    assert sorted(got) == ['classes', 'probs'] and got['probs'].dtype == np.float16
    assert got['probs'].shape == (3, 45, 70)
    assert np.array_equal(got['probs'], want['probs'])
    assert list(got['classes']) == list(want['classes']) == ['sky', 'grass;lawn', 'rock']
    assert np.allclose(got['probs'].astype(np.float32), direct.probs, atol=1e-3)
    with zipfile.ZipFile(io.BytesIO(probs_npz)) as zf:  # an .npz as np.savez_compressed writes
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}


def test_download_ids_are_data(server, monkeypatch):
    url, app = server
    for bad in ('/download/nothere/labels.png', '/download/x/probs.npy',
                '/download/..%2F..%2Fetc/labels.png', '/download/abc/../../etc/passwd'):
        status, body, _ = get(url + bad)
        assert status == 404, bad
    monkeypatch.setattr(app, 'keep', 1)  # the oldest result's downloads go with it
    first = post(url, dict(image=data_url(photo()), classes='a; b', mode='quick'))
    assert get(url + first['downloads']['labels'])[0] == 200
    second = post(url, dict(image=data_url(photo()), classes='a; b', mode='quick'))
    status, body, _ = get(url + first['downloads']['labels'])
    assert status == 404 and 'last 1 requests' in json.loads(body)['error']
    assert set(app.downloads) == set(app.results) == {second['id']}
    monkeypatch.setattr(web_demo, 'DOWNLOAD_PROBS_BYTES', 2 * 45 * 70 * 2 - 1)
    status, body, _ = get(url + second['downloads']['probs'])
    assert status == 413 and 'tools/demo.py' in json.loads(body)['error']
    assert get(url + second['downloads']['labels'])[0] == 200


def test_is_loopback():
    for host in ('127.0.0.1', '127.0.0.2', '::1', '[::1]', 'localhost', 'LocalHost'):
        assert web_demo.is_loopback(host), host
    for host in ('0.0.0.0', '::', '192.168.1.5', '10.0.0.1', 'fe80::1', 'example.org', ''):
        assert not web_demo.is_loopback(host), host


@pytest.fixture
def stub_app(monkeypatch):
    """No model: the Host tests only need the handler."""
    app = types.SimpleNamespace(limits=dict(max_image_bytes=1 << 20), info=lambda: {'ok': 1})
    monkeypatch.setattr(web_demo, 'build_app', lambda args: app)
    return app


def test_default_host_is_loopback_without_warning(stub_app, capsys):
    assert web_demo.parse_args([]).host == '127.0.0.1'
    srv, _ = serve(['--port', '0'])
    try:
        assert srv.server_address[0] == '127.0.0.1'
        assert 'WARNING' not in capsys.readouterr().err
    finally:
        srv.shutdown()
        srv.server_close()


def test_non_loopback_host_warns_and_is_allowed(stub_app, capsys, monkeypatch):
    """127.0.0.2 stands in for a network address (is_loopback says no): nothing leaves the machine."""
    monkeypatch.setattr(web_demo, 'is_loopback', lambda h: h == '127.0.0.1')
    srv, _ = serve(['--host', '127.0.0.2', '--port', '0', '--allow-host', 'demo.lan'])
    port = srv.server_address[1]
    try:
        err = capsys.readouterr().err
        assert 'WARNING: --host 127.0.0.2 is not a loopback address' in err
        assert 'no authentication' in err and '127.0.0.2' in err.split('one of:')[1]
        assert srv.server_address[0] == '127.0.0.2'
        base = f'http://127.0.0.2:{port}/info'
        assert get(base)[0] == 200  # Host: 127.0.0.2:port, the bound host
        assert get(base, host='demo.lan')[0] == 200
        assert get(base, host='localhost')[0] == 200
        status, body, _ = get(base, host=f'rebind.attacker.example:{port}')  # DNS rebinding
        assert status == 403 and 'not allowed' in json.loads(body)['error']
    finally:
        srv.shutdown()
        srv.server_close()


def test_wildcard_host_adds_no_name(stub_app, capsys, monkeypatch):
    """A wildcard address names no host: only loopback and --allow-host names are answered. The
    bind itself is replaced (the test must not listen on the network)."""
    bound = {}

    class FakeServer:
        def __init__(self, addr, handler):
            bound['addr'] = addr
            self.server_address = addr

    monkeypatch.setattr(web_demo, 'ThreadingHTTPServer', FakeServer)
    srv, _ = web_demo.make_server(web_demo.parse_args(['--host', '0.0.0.0', '--port', '7861']))
    assert bound['addr'] == ('0.0.0.0', 7861)
    err = capsys.readouterr().err
    assert 'WARNING: --host 0.0.0.0 is not a loopback address' in err
    assert 'wildcard address names no host' in err
    allowed = err.split('one of: ')[1].split(' (')[0].split(', ')
    assert sorted(allowed) == sorted(web_demo.LOOPBACK_NAMES)


def test_ipv6_loopback_host(stub_app, capsys):
    if not socket.has_ipv6:
        pytest.skip('no IPv6 on this machine')
    try:
        srv, _ = serve(['--host', '::1', '--port', '0'])
    except SystemExit as e:
        pytest.skip(f'cannot bind ::1: {e}')
    try:
        assert srv.server_address[0] == '::1'
        assert get(f'http://[::1]:{srv.server_address[1]}/info')[0] == 200
        assert 'WARNING' not in capsys.readouterr().err
    finally:
        srv.shutdown()
        srv.server_close()


def test_page_download_links_in_headless_chromium(server, tmp_path):
    """After a segmentation the page links both downloads; the browser fetches them from the server
    (same bytes as the app keeps)."""
    url, app = server
    drv = chromium_driver(tmp_path)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
    try:
        img_path = tmp_path / 'upload.png'
        Image.fromarray(photo()).save(img_path)
        drv.get(url)
        wait = WebDriverWait(drv, 120)
        drv.find_element(By.ID, 'file').send_keys(str(img_path))
        wait.until(lambda d: d.execute_script("return document.getElementById('preview')"
                                              ".naturalWidth") == 70)
        drv.execute_script("document.getElementById('classes').value = 'sky; grass'")
        Select(drv.find_element(By.ID, 'mode')).select_by_value('quick')
        drv.find_element(By.ID, 'submit').click()
        wait.until(lambda d: 'done in' in d.find_element(By.ID, 'status').text)
        got = {}
        for link, name in (('dl-labels', 'labels.png'), ('dl-probs', 'probs.npz')):
            href = drv.find_element(By.ID, link).get_attribute('href')
            rid = href.split('/')[-2]
            assert href == f'{url}/download/{rid}/{name}'
            assert drv.find_element(By.ID, link).get_attribute('download') is not None
            got[name] = drv.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "fetch(arguments[0]).then(async r => done([r.status, "
                "r.headers.get('Content-Disposition'), Array.from(new Uint8Array("
                "await r.arrayBuffer()))]));", href)
        for name, (status, disposition, body) in got.items():
            assert status == 200 and disposition.endswith(f'_{name}"')
            assert bytes(body) == app.download(rid, name)[0]
    finally:
        drv.quit()
