"""tools/web_demo.py without weights: the miniature world's towers, sample scenes and banner."""
import base64
import io
import json
import threading
import urllib.request

import numpy as np
import pytest
from PIL import Image
from tf_helpers import load_tool
from world_towers_helpers import ship_brief_towers

web_demo = load_tool('web_demo')


pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


@pytest.fixture(scope='module')
def shipped_dir(tmp_path_factory):
    return ship_brief_towers(tmp_path_factory.mktemp('world'))


@pytest.fixture
def world_server(shipped_dir, tmp_path, monkeypatch):
    import declip_mm.miniworld.shipped as shipped
    monkeypatch.setattr(shipped, 'SHIPPED_DIR', shipped_dir)
    monkeypatch.setenv('DECLIP_MM_CACHE', str(tmp_path / 'cache'))
    monkeypatch.chdir(tmp_path)
    srv, app = web_demo.make_server(web_demo.parse_args(['--port', '0']))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_address[1]}', app
    srv.shutdown()
    srv.server_close()


def get(url):
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.read()


def test_world_page_info_samples_and_segmentation(world_server):
    from declip_mm.miniworld import ALL_CLASSES
    from declip_mm.miniworld.generator import render_scene
    from declip_mm.miniworld.layouts import scene_seed
    url, app = world_server
    info = json.loads(get(url + '/info'))
    assert info['random_weights'] == '' and 'MINIATURE WORLD' in info['banner']
    assert info['default_classes'].split('; ') == list(ALL_CLASSES)
    assert info['samples'] == ['scene0', 'scene1', 'scene2', 'scene3']
    # a sample is the world's benchmark scene, enlarged 4x by nearest neighbour
    img = np.asarray(Image.open(io.BytesIO(get(url + '/sample/scene2.png'))).convert('RGB'))
    scene = render_scene(scene_seed(0, 'bench', 2), 64, caption=False)
    np.testing.assert_array_equal(img[::4, ::4], scene.image)
    np.testing.assert_array_equal(img, np.repeat(np.repeat(scene.image, 4, 0), 4, 1))
    body = dict(image='data:image/png;base64,' + base64.b64encode(
        get(url + '/sample/scene2.png')).decode(), classes=info['default_classes'])
    req = urllib.request.Request(url + '/segment', data=json.dumps(body).encode(),
                                 headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=120) as r:
        res = json.loads(r.read())
    assert res['num_classes'] == 17 and (res['width'], res['height']) == (256, 256)
    # the page's result is the inferencer's on the same image
    direct = app.inferencer(img, classes=info['default_classes'])
    names = [e['name'] for e in res['legend'] if e['area'] > 0]
    assert names == [e['name'] for e in direct.legend if e['area'] > 0]


def test_random_weights_flag_keeps_the_old_page(shipped_dir, tmp_path, monkeypatch):
    import declip_mm.miniworld.shipped as shipped
    monkeypatch.setattr(shipped, 'SHIPPED_DIR', shipped_dir)
    monkeypatch.setenv('DECLIP_MM_CACHE', str(tmp_path / 'cache'))
    monkeypatch.chdir(tmp_path)
    app = web_demo.build_app(web_demo.parse_args(['--random-weights']))
    info = app.info()
    assert 'RANDOM' in info['random_weights'] and info['banner'] == ''
    assert 'scene0' not in info['samples']


def chromium_driver(tmp_path):
    import shutil
    chromium, driver = shutil.which('chromium'), shutil.which('chromedriver')
    if not chromium or not driver:
        pytest.skip('Chromium is not installed (apt-get install -y chromium chromium-driver)')
    webdriver = pytest.importorskip('selenium.webdriver', reason='selenium is not installed')
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
              '--disable-background-networking', '--disable-component-update', '--disable-sync',
              '--disable-dev-shm-usage', f'--user-data-dir={tmp_path / "chromium-profile"}',
              '--window-size=1280,900'):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def test_world_page_in_headless_chromium(world_server, tmp_path):
    """The page shows the world banner, fills in the world's classes, offers the world scenes."""
    url, _ = world_server
    drv = chromium_driver(tmp_path)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        drv.get(url)
        wait = WebDriverWait(drv, 120)
        wait.until(lambda d: 'MINIATURE WORLD' in d.find_element(By.ID, 'banner').text)
        assert drv.find_element(By.ID, 'classes').get_attribute('value').startswith('fish; star')
        buttons = drv.find_elements(By.CSS_SELECTOR, '#samples button')
        assert [b.text for b in buttons] == ['scene0', 'scene1', 'scene2', 'scene3']
        buttons[1].click()
        wait.until(lambda d: d.execute_script("return document.getElementById('preview')"
                                              ".naturalWidth") == 256)
        drv.find_element(By.ID, 'submit').click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#legend tr.legend-row'))
        names = {r.get_attribute('data-name')
                 for r in drv.find_elements(By.CSS_SELECTOR, '#legend tr.legend-row')}
        from declip_mm.miniworld import ALL_CLASSES
        assert names <= set(ALL_CLASSES) | {'unlabeled'}
    finally:
        drv.quit()
