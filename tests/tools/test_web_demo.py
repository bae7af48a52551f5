"""tools/web_demo.py: the HTTP API, and the page end to end in headless Chromium (selenium)."""
import base64
import io
import json
import shutil
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image
from tf_helpers import load_tool

web_demo = load_tool('web_demo')
FAST = ['test_pipeline.1.scale=(4096,64)', 'model.test_cfg.crop_size=64',
        'model.test_cfg.stride=48']

pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py



def photo(h=45, w=70):
    rng = np.random.default_rng(0)
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2] = (40, 90, 220)
    img[h // 2:] = (60, 170, 40)
    return np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def server():
    srv, app = web_demo.make_server(web_demo.parse_args(['--port', '0', '--random-weights',
                                                              '--cfg-options', *FAST]))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    assert srv.server_address[0] == '127.0.0.1'  # never reachable from another machine
    yield f'http://127.0.0.1:{srv.server_address[1]}', app
    srv.shutdown()
    srv.server_close()


def post(url, payload):
    req = urllib.request.Request(url + '/segment', data=json.dumps(payload).encode(),
                                 headers={'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_http_api(server):
    url, app = server
    assert app.random_weights and 'RANDOM' in app.random_weights
    assert web_demo.HOST == '127.0.0.1'
    info = json.loads(urllib.request.urlopen(url + '/info').read())
    assert info['protocol'] == 'slide' and 'RANDOM' in info['random_weights']
    for name in info['samples']:  # scikit-image's bundled photos, served from memory
        assert Image.open(io.BytesIO(urllib.request.urlopen(f'{url}/sample/{name}.png').read())).size
    with pytest.raises(urllib.error.HTTPError, match='404'):
        urllib.request.urlopen(url + '/sample/nothing.png')
    with pytest.raises(urllib.error.HTTPError, match='404'):
        urllib.request.urlopen(url + '/prob/unknown/0.png')
    buf = io.BytesIO()
    Image.fromarray(photo()).save(buf, format='PNG')
    image = 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode()
    for mode in ('benchmark', 'quick'):
        status, res = post(url, dict(image=image, classes='sky; grass, lawn', mode=mode))
        assert status == 200, res
        assert (res['width'], res['height']) == (70, 45)
        assert [e['name'] for e in res['legend'][:2]] == ['sky', 'grass']
        assert sum(e['area'] for e in res['legend']) == pytest.approx(1.0)
        overlay = Image.open(io.BytesIO(base64.b64decode(res['overlay'].split(',', 1)[1])))
        assert overlay.size == (70, 45)
        prob = Image.open(io.BytesIO(urllib.request.urlopen(f"{url}/prob/{res['id']}/1.png").read()))
        assert prob.size == (70, 45)
        # the page's numbers are the inferencer's
        direct = app.inferencer(photo(), classes='sky; grass, lawn',
                                mode=None if mode == 'benchmark' else 'whole')
        assert [e['area'] for e in res['legend']] == pytest.approx([e['area'] for e in direct.legend])
    status, res = post(url, dict(image=image, classes=' ; ', mode='quick'))
    assert status == 400 and 'no class names' in res['error']
    status, res = post(url, dict(image='not an image', classes='a'))
    assert status == 400 and 'data URL' in res['error']
    status, res = post(url, dict(image=image, classes='a', mode='fast'))
    assert status == 400 and "'benchmark' or 'quick'" in res['error']


def chromium_driver(tmp_path):
    chromium, driver = shutil.which('chromium'), shutil.which('chromedriver')
    if not chromium or not driver:
        pytest.skip('Chromium is not installed (.ci/run installs Debian\'s chromium and '
                    'chromium-driver; or: apt-get install -y chromium chromium-driver)')
    webdriver = pytest.importorskip('selenium.webdriver', reason='selenium is not installed '
                                    '(requirements/tests.txt)')
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
              '--disable-background-networking', '--disable-component-update', '--disable-sync',
              '--disable-dev-shm-usage', f'--user-data-dir={tmp_path / "chromium-profile"}',
              '--window-size=1280,900'):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def test_page_in_headless_chromium(server, tmp_path):
    url, _ = server
    drv = chromium_driver(tmp_path)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
    try:
        img_path = tmp_path / 'upload.png'
        Image.fromarray(photo()).save(img_path)
        drv.get(url)
        wait = WebDriverWait(drv, 120)
        wait.until(lambda d: 'RANDOM' in d.find_element(By.ID, 'banner').text)
        drv.find_element(By.ID, 'file').send_keys(str(img_path))
        wait.until(lambda d: d.execute_script("return document.getElementById('preview')"
                                              ".naturalWidth") == 70)
        box = drv.find_element(By.ID, 'classes')
        box.clear()
        box.send_keys('sky; grass, lawn; road')
        Select(drv.find_element(By.ID, 'mode')).select_by_value('quick')
        drv.find_element(By.ID, 'submit').click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#legend tr.legend-row'))
        rows = drv.find_elements(By.CSS_SELECTOR, '#legend tr.legend-row')
        names = [r.get_attribute('data-name') for r in rows]
        assert names[:3] == ['sky', 'grass', 'road'] and set(names) <= {'sky', 'grass', 'road',
                                                                         'unlabeled'}
        assert sum(float(r.get_attribute('data-area')) for r in rows) == pytest.approx(1.0)
        assert 'grass (lawn)' in rows[1].text
        size = drv.execute_script("const i = document.getElementById('overlay');"
                                  "return [i.naturalWidth, i.naturalHeight];")
        assert size == [70, 45]
        Select(drv.find_element(By.ID, 'prob-class')).select_by_visible_text('road')
        wait.until(lambda d: d.find_element(By.ID, 'prob').get_attribute('src').endswith('/2.png'))
        wait.until(lambda d: d.execute_script("return document.getElementById('prob')"
                                              ".naturalWidth") == 70)
        assert 'done in' in drv.find_element(By.ID, 'status').text
        # a bad class list is reported on the page
        box.clear()
        drv.find_element(By.ID, 'submit').click()
        wait.until(lambda d: 'no class names' in d.find_element(By.ID, 'status').text)
    finally:
        drv.quit()


def test_page_exif_classes_limits_and_queue(server, tmp_path):
    """Issue 24 on the page: preview and overlay agree on EXIF orientation; a path typed as a class
    is a class name; the probability menu offers every class (class 255 of 256 included); an image
    over the pixel limit is refused with the reason; a request waiting for the model says so."""
    url, app = server
    drv = chromium_driver(tmp_path)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
    wait = WebDriverWait(drv, 120)
    js = drv.execute_script

    def submit(classes):
        js("document.getElementById('classes').value = arguments[0];"
           "document.getElementById('legend').innerHTML = '';"
           "document.getElementById('status').textContent = '';", classes)
        drv.find_element(By.ID, 'submit').click()

    def done():
        wait.until(lambda d: 'done in' in d.find_element(By.ID, 'status').text)
        return [r.get_attribute('data-name')
                for r in drv.find_elements(By.CSS_SELECTOR, '#legend tr.legend-row')]

    def natural(img_id):
        return js(f"const i = document.getElementById('{img_id}');"
                  "return [i.naturalWidth, i.naturalHeight];")

    try:
        drv.get(url)
        wait.until(lambda d: 'RANDOM' in d.find_element(By.ID, 'banner').text)
        assert 'up to 32 MB and 12.0 MP' in drv.find_element(By.ID, 'limits').text
        Select(drv.find_element(By.ID, 'mode')).select_by_value('quick')
        # a JPEG whose EXIF says "turned 90 degrees": the browser shows it 45 wide, 70 high
        exif = Image.Exif()
        exif[0x0112] = 6
        turned = tmp_path / 'turned.jpg'
        Image.fromarray(photo()).save(turned, quality=95, exif=exif.tobytes())
        drv.find_element(By.ID, 'file').send_keys(str(turned))
        wait.until(lambda d: natural('preview') == [45, 70])
        submit('sky; grass')
        done()
        wait.until(lambda d: natural('overlay') == natural('preview'))
        assert '45x70 px' in drv.find_element(By.ID, 'status').text
        # a path in the Classes field is one class of that name; the file is not read
        secret = tmp_path / 'secret.txt'
        secret.write_text('root:x:0:0\nsecret-line\n')
        submit(str(secret))
        assert [n for n in done() if n != 'unlabeled'] == [str(secret)]
        assert 'secret-line' not in drv.page_source
        # 256 classes: the menu offers all of them, 255 included
        app.limits.update(max_classes=300, max_names=300)
        submit('; '.join(f'c{i}' for i in range(256)))
        done()
        values = js("return Array.from(document.getElementById('prob-class').options,"
                    " o => [o.value, o.textContent]);")
        assert values == [[str(i), f'c{i}'] for i in range(256)]
        Select(drv.find_element(By.ID, 'prob-class')).select_by_visible_text('c255')
        wait.until(lambda d: d.find_element(By.ID, 'prob').get_attribute('src').endswith('/255.png'))
        wait.until(lambda d: natural('prob') == [45, 70])
        # while another request holds the model, the page shows its place in the queue
        app.lock.acquire()
        try:
            submit('sky; grass')
            wait.until(lambda d: 'waiting: 0 request(s) ahead of yours' in
                       d.find_element(By.ID, 'status').text)
        finally:
            app.lock.release()
        done()
        # an image over the pixel limit: the server's reason is shown
        big = tmp_path / 'big.png'
        Image.new('1', (4000, 3001)).save(big)
        drv.find_element(By.ID, 'file').send_keys(str(big))
        wait.until(lambda d: natural('preview') == [4000, 3001])
        submit('sky')
        wait.until(lambda d: '4000x3001 = 12.0 MP' in d.find_element(By.ID, 'status').text)
        assert drv.find_element(By.ID, 'status').get_attribute('class') == 'error'
    finally:
        drv.quit()
