"""tools/gradio_demo.py (the optional declip_mm[demo] extra) in headless Chromium: the page loads
with no request leaving the machine (browser and server), segments through the same inferencer and
limits as tools/web_demo.py, and offers the inferencer's label PNG and probabilities."""
import io
import json
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from chromium_helpers import chromium_driver, requested_urls
from PIL import Image
from tf_helpers import load_tool

pytest.importorskip('gradio', reason='Gradio is not installed: it is the optional extra '
                    '(pip install "declip_mm[demo]"; .ci/run installs it)')
gradio_demo = load_tool('gradio_demo')
FAST = ['test_pipeline.1.scale=(4096,64)', 'model.test_cfg.crop_size=64',
        'model.test_cfg.stride=48']
CLASSES = 'sky; grass, lawn; rock'


pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


class OutboundConnections:
    """Audit hook: connections of this process to non-loopback addresses while ``on`` (refused)."""

    def __init__(self):
        self.on, self.seen = False, []
        sys.addaudithook(self)  # cannot be removed: inert once ``on`` is False

    def __call__(self, event, args):
        if not self.on or event != 'socket.connect':
            return
        addr = args[1]
        host = addr[0] if isinstance(addr, tuple) else str(addr)
        if isinstance(addr, tuple) and not gradio_demo.web_demo.is_loopback(str(host)):
            self.seen.append(addr)
            raise ConnectionRefusedError(f'test: no connection to {addr} allowed')


_OUTBOUND = OutboundConnections()


@pytest.fixture(scope='module')
def served():
    _OUTBOUND.on, _OUTBOUND.seen[:] = True, []
    args = gradio_demo.web_demo.parse_args(['--port', '0', '--random-weights', '--cfg-options', *FAST])
    server, sock, app, blocks = gradio_demo.make_server(args)
    thread = threading.Thread(target=server.run, kwargs=dict(sockets=[sock]), daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    assert sock.getsockname()[0] == '127.0.0.1'
    yield f'http://127.0.0.1:{sock.getsockname()[1]}', app
    server.should_exit = True
    thread.join(10)
    blocks.segmenter.close()
    _OUTBOUND.on = False


def photo(h=45, w=70):
    return np.random.default_rng(2).integers(0, 256, (h, w, 3), dtype=np.uint8)


def wait_text(drv, css, predicate, timeout=120):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(drv, timeout).until(
        lambda d: predicate(d.find_element(By.CSS_SELECTOR, css).text))
    return drv.find_element(By.CSS_SELECTOR, css).text


def fill(drv, css, text):
    from selenium.webdriver.common.by import By
    box = drv.find_element(By.CSS_SELECTOR, css)
    box.clear()
    box.send_keys(text)


def test_gradio_page_offline_same_results_and_downloads(served, tmp_path, monkeypatch):
    from selenium.webdriver.common.by import By

    from declip_mm.apis import DeCLIPInferencer
    url, app = served
    img_path = tmp_path / 'upload.png'
    Image.fromarray(photo()).save(img_path)
    drv = chromium_driver(tmp_path, performance_log=True, height=1400)
    try:
        drv.get(url)
        wait_text(drv, '#banner', lambda t: 'RANDOM' in t, timeout=60)
        assert '12 MP' in drv.find_element(By.CSS_SELECTOR, '#limits').text
        drv.find_element(By.CSS_SELECTOR, '#photo input[type=file]').send_keys(str(img_path))
        fill(drv, '#classes textarea', CLASSES)
        fill(drv, '#prob_thd textarea', '0.34')
        time.sleep(0.5)  # let the upload finish before the click
        drv.find_element(By.CSS_SELECTOR, '#segment').click()
        status = wait_text(drv, '#status', lambda t: 'done in' in t)
        assert '70x45 px' in status and 'benchmark' in status
        rows = [[c.text for c in r.find_elements(By.CSS_SELECTOR, '[role=gridcell]')]
                for r in drv.find_elements(By.CSS_SELECTOR, '#legend [role=row][data-index]')]
        links = {k: drv.find_element(By.CSS_SELECTOR, f'#{k} a').get_attribute('href')
                 for k in ('dl-labels', 'dl-probs')}
        # the same request through the inferencer
        direct = app.inferencer(photo(), classes=CLASSES, prob_thd=0.34)
        files = DeCLIPInferencer.save(direct, str(tmp_path / 'direct'))
        want = [[e['name'], ', '.join(e['synonyms']), 100 * e['area']] for e in direct.legend]
        assert len(want) >= 3 and [r[:2] for r in rows] == [w[:2] for w in want]
        assert [float(r[2]) for r in rows] == pytest.approx([w[2] for w in want], abs=0.051)
        for key, name in (('dl-labels', 'labels'), ('dl-probs', 'probs')):
            assert links[key].startswith(url + '/')
            with urllib.request.urlopen(links[key], timeout=60) as r:
                got = r.read()
            with open(files[name], 'rb') as f:
                expected = f.read()
            if name == 'labels':
                assert got == expected
            else:
                with np.load(io.BytesIO(got)) as a, np.load(files[name]) as b:
                    assert np.array_equal(a['probs'], b['probs'])
                    assert list(a['classes']) == list(b['classes']) == ['sky', 'grass;lawn', 'rock']
        # the page's limits are the stdlib page's checks: too many classes is refused with its text
        monkeypatch.setitem(app.limits, 'max_classes', 2)
        fill(drv, '#classes textarea', CLASSES)
        drv.find_element(By.CSS_SELECTOR, '#segment').click()
        from selenium.webdriver.support.ui import WebDriverWait
        WebDriverWait(drv, 60).until(lambda d: 'accepts up to 2 (--max-classes)' in d.page_source)
        urls = requested_urls(drv)
    finally:
        drv.quit()
    assert urls, 'no request seen in the performance log'
    web = [u for u in urls if u.split(':', 1)[0] in ('http', 'https', 'ws', 'wss')]
    assert sum(u.startswith(url + '/') for u in web) > 10  # the page, its scripts, the API calls
    outside = [u for u in web if not u.startswith(url + '/')]
    assert not outside, outside  # no CDN, fonts, analytics or share-link requests
    assert not _OUTBOUND.seen  # nor from the server process


def test_host_allow_list(served):
    url, _ = served
    req = urllib.request.Request(url + '/', headers={'Host': 'rebind.attacker.example'})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 403 and 'not allowed' in json.loads(e.value.read())['error']
    with urllib.request.urlopen(urllib.request.Request(url + '/', headers={'Host': 'localhost'}),
                                timeout=30) as r:
        assert r.status == 200


def test_offline_settings():
    import os
    assert os.environ['GRADIO_ANALYTICS_ENABLED'] == 'False'
    assert gradio_demo.web_demo.parse_args([]).host == '127.0.0.1'


def test_demo_extra_declares_the_tested_range():
    """setup.py's extra reads requirements/demo.txt; the installed gradio is in its range."""
    import os.path as osp

    import gradio
    from packaging.requirements import Requirement
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    with open(osp.join(root, 'requirements', 'demo.txt')) as f:
        (line, ) = [x.split('#')[0].strip() for x in f if x.split('#')[0].strip()]
    req = Requirement(line)
    assert req.name == 'gradio' and str(req.specifier) == ','.join(
        sorted(gradio_demo.GRADIO_RANGE.split(',')))
    assert gradio.__version__ in req.specifier
    with open(osp.join(root, 'setup.py')) as f:
        assert "'demo': read_requirements('demo.txt')" in f.read()


def test_photo_is_never_a_server_path(served, tmp_path, monkeypatch):
    """An API call naming a file on the server (in the working directory or elsewhere) as the photo
    is refused before the callback runs: only uploads are photos."""
    url, _ = served
    monkeypatch.chdir(tmp_path)  # Gradio treats the working directory specially
    secret = tmp_path / 'secret.png'
    Image.fromarray(photo()).save(secret)
    calls = []
    real = gradio_demo.GradioSegmenter.__call__
    monkeypatch.setattr(gradio_demo.GradioSegmenter, '__call__',
                        lambda self, *a: calls.append(a) or real(self, *a))
    for path in (str(secret), 'secret.png', '/etc/hostname'):
        body = json.dumps({'data': [{'path': path, 'meta': {'_type': 'gradio.FileData'}},
                                    'a; b', 'quick', '']}).encode()
        req = urllib.request.Request(url + '/gradio_api/call/segment', data=body,
                                     headers={'Content-Type': 'application/json'})
        with urllib.request.urlopen(req, timeout=30) as r:
            event = json.loads(r.read())['event_id']
        with urllib.request.urlopen(f'{url}/gradio_api/call/segment/{event}', timeout=60) as r:
            answer = r.read().decode()
        assert answer.startswith('event: error'), (path, answer[:200])
        assert 'overlay' not in answer and 'declip_' not in answer
    assert calls == []


def test_queue_position_is_shown(served, tmp_path, monkeypatch):
    """While one segmentation runs, a second browser's request waits and its page says where it is
    in Gradio's queue; both finish."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    url, app = served
    release, started = threading.Event(), threading.Event()
    real = app.inferencer

    class Held:
        def __getattr__(self, name):
            return getattr(real, name)

        def __call__(self, *a, **k):
            started.set()
            release.wait(60)
            return real(*a, **k)

    monkeypatch.setattr(app, 'inferencer', Held())
    img_path = tmp_path / 'upload.png'
    Image.fromarray(photo()).save(img_path)
    drivers = [chromium_driver(tmp_path / f'b{i}', height=1400) for i in range(2)]
    try:
        for drv in drivers:
            drv.get(url)
            WebDriverWait(drv, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, '#segment'))
            drv.find_element(By.CSS_SELECTOR, '#photo input[type=file]').send_keys(str(img_path))
            fill(drv, '#classes textarea', 'sky; grass')
        time.sleep(0.5)
        drivers[0].find_element(By.CSS_SELECTOR, '#segment').click()
        assert started.wait(60)
        drivers[1].find_element(By.CSS_SELECTOR, '#segment').click()
        WebDriverWait(drivers[1], 60).until(
            lambda d: 'queue: 1/' in d.find_element(By.CSS_SELECTOR, '#status').get_attribute(
                'textContent') or 'queue: 1/' in d.find_element(By.TAG_NAME, 'body').text)
        release.set()
        for drv in drivers:
            wait_text(drv, '#status', lambda t: 'done in' in t)
    finally:
        release.set()
        for drv in drivers:
            drv.quit()
