"""tools/web_demo.py with raw HTTP requests (issue 24): what the server refuses and why.

Host / Origin / Content-Type checks (cross-site posts, DNS rebinding), the Classes field as data (a
path there is a class name, never a file read on the server), malformed bodies, the size limits
(image bytes after base64 decoding, pixels, classes, names), EXIF orientation (the page and the
Python API agree), the queue status and a busy port.
"""
import base64
import http.client
import io
import json
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image
from tf_helpers import load_tool

web_demo = load_tool('web_demo')
FAST = ['test_pipeline.1.scale=(4096,64)', 'model.test_cfg.crop_size=64',
        'model.test_cfg.stride=48']


pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py


class Gate:
    """Wraps the inferencer: counts the segmentations, can hold one while it runs."""

    def __init__(self, inferencer):
        self.inner, self.calls = inferencer, 0
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        self.entered.set()
        assert self.open.wait(60)
        return self.inner(*args, **kwargs)


@pytest.fixture(scope='module')
def server():
    srv, app = web_demo.make_server(web_demo.parse_args(
        ['--port', '0', '--random-weights', '--allow-host', 'demo.example', '--cfg-options',
         *FAST]))
    app.inferencer = Gate(app.inferencer)
    app.http_server = srv
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1], app
    srv.shutdown()
    srv.server_close()


def photo(h=45, w=70):
    rng = np.random.default_rng(0)
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2] = (40, 90, 220)
    img[h // 2:, : w // 3] = (60, 170, 40)
    img[h // 2:, w // 3:] = (200, 60, 40)
    return np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)


def png_bytes(img=None, **save):
    buf = io.BytesIO()
    (img if isinstance(img, Image.Image) else Image.fromarray(photo() if img is None else img)
     ).save(buf, format='PNG', **save)
    return buf.getvalue()


def data_url(raw: bytes) -> str:
    return 'data:image/png;base64,' + base64.b64encode(raw).decode()


def raw(port, method, path, body=None, host='default', ctype='application/json', origin=None,
        length='auto', timeout=20):
    """One request with exactly these headers (http.client adds none): (status, JSON or bytes)."""
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            conn.putheader('Host', f'127.0.0.1:{port}' if host == 'default' else host)
        if ctype is not None and body is not None:
            conn.putheader('Content-Type', ctype)
        if origin is not None:
            conn.putheader('Origin', origin)
        if body is not None and length is not None:
            conn.putheader('Content-Length', str(len(body)) if length == 'auto' else length)
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, data
    finally:
        conn.close()


def segment_body(classes='sky; grass', image=None, **kw):
    return json.dumps(dict(image=image or data_url(png_bytes()), classes=classes, mode='quick',
                           **kw)).encode()


def test_only_json_content_type(server):
    port, app = server
    before = app.inferencer.calls
    for ctype in ('text/plain', 'text/plain;charset=UTF-8', 'application/x-www-form-urlencoded',
                  'multipart/form-data; boundary=x', None):
        status, res = raw(port, 'POST', '/segment', segment_body(), ctype=ctype)
        assert status == 415 and 'Content-Type must be application/json' in res['error'], ctype
    assert app.inferencer.calls == before  # refused before anything ran
    status, res = raw(port, 'POST', '/segment', segment_body(),
                      ctype='application/json; charset=utf-8')
    assert status == 200, res


def test_host_must_be_loopback_or_allowed(server):
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: every request is refused."""
    port, app = server
    before = app.inferencer.calls
    for host in ('evil.example', f'evil.example:{port}', f'127.0.0.1.evil.example:{port}',
                 f'localhost.evil.example:{port}', '', None):
        for method, path, body in (('GET', '/', None), ('GET', '/info', None),
                                   ('GET', '/sample/astronaut.png', None),
                                   ('POST', '/segment', segment_body())):
            status, res = raw(port, method, path, body, host=host)
            assert status == 403 and 'is not allowed' in res['error'], (host, path)
    assert app.inferencer.calls == before
    for host in (f'127.0.0.1:{port}', f'localhost:{port}', f'[::1]:{port}', 'LOCALHOST',
                 f'demo.example:{port}'):  # loopback names, and one given with --allow-host
        status, res = raw(port, 'GET', '/info', host=host)
        assert status == 200 and 'RANDOM' in res['random_weights'], host


def test_cross_origin_post_refused(server):
    port, app = server
    before = app.inferencer.calls
    for origin in ('http://evil.example', 'null', f'http://127.0.0.1:{port + 1}',
                   f'https://evil.example:{port}', f'http://localhost:{port}'):
        status, res = raw(port, 'POST', '/segment', segment_body(), origin=origin)
        assert status == 403 and 'cross-origin' in res['error'], origin
    assert app.inferencer.calls == before
    # the page's own origin (the browser sends it on every POST), and no Origin (curl, scripts)
    status, res = raw(port, 'POST', '/segment', segment_body(), origin=f'http://127.0.0.1:{port}')
    assert status == 200, res
    status, res = raw(port, 'POST', '/segment', segment_body(), origin=f'http://localhost:{port}',
                      host=f'localhost:{port}')
    assert status == 200, res


def test_a_path_in_the_classes_field_is_a_name(server, tmp_path, monkeypatch):
    port, _ = server
    secret = tmp_path / 'secret'
    secret.write_text('root:x:0:0:root\nsecret-line\n')
    monkeypatch.chdir(tmp_path)
    for text in (str(secret), 'secret', '/etc/passwd'):
        status, res = raw(port, 'POST', '/segment', segment_body(classes=text))
        assert status == 200, res
        names = [e['name'] for e in res['legend'] if e['name'] != 'unlabeled']
        assert names == [text]  # one class called so; nothing read from the file
        assert 'secret-line' not in json.dumps(res) and 'root:' not in json.dumps(res)
    # the classes field must be text (or a list of names): anything else is a clear 400
    status, res = raw(port, 'POST', '/segment', segment_body(classes=5))
    assert status == 400 and 'classes must be text' in res['error']
    status, res = raw(port, 'POST', '/segment', segment_body(classes=['sky', ['grass', 3]]))
    assert status == 400 and 'class 2 of the list' in res['error']
    status, res = raw(port, 'POST', '/segment', segment_body(classes='sky; grass, sky'))
    assert status == 400 and "'sky' is in class 1" in res['error']


def test_malformed_bodies(server):
    port, app = server
    before = app.inferencer.calls
    for body in (b'null', b'[]', b'5', b'"text"'):
        status, res = raw(port, 'POST', '/segment', body)
        assert status == 400 and 'must be a JSON object' in res['error'], body
    status, res = raw(port, 'POST', '/segment', b'{"image": ')
    assert status == 400 and 'not valid JSON' in res['error']
    t0 = time.perf_counter()
    for length in ('-1', '-100', 'abc', '1e3', ' 5 5'):  # a negative length used to hang the request
        status, res = raw(port, 'POST', '/segment', segment_body(), length=length, timeout=10)
        assert status == 400 and 'bad Content-Length' in res['error'], length
    assert time.perf_counter() - t0 < 10
    status, res = raw(port, 'POST', '/segment', segment_body(), length=None)
    assert status == 411 and 'Content-Length' in res['error']
    for field, value, msg in (('prob_thd', 'abc', 'min. confidence'), ('prob_thd', 2, 'in [0, 1]'),
                              ('mode', 'fast', "'benchmark' or 'quick'"),
                              ('image', 5, 'data URL'), ('image', 'data:image/png;base64,AAAA',
                                                         'cannot decode')):
        payload = json.loads(segment_body())
        payload[field] = value
        status, res = raw(port, 'POST', '/segment', json.dumps(payload).encode())
        assert status == 400 and msg in res['error'], (field, value, res)
    assert app.inferencer.calls == before


def test_stalled_body_is_dropped(server, monkeypatch):
    """A client that sends less than its Content-Length does not hold a thread forever."""
    port, app = server
    handler = app.http_server.RequestHandlerClass
    assert handler.timeout == 60
    monkeypatch.setattr(handler, 'timeout', 1)
    with socket.create_connection(('127.0.0.1', port), timeout=30) as s:
        s.sendall(b'POST /segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json'
                  b'\r\nContent-Length: 100\r\n\r\n{"image": ')
        t0 = time.perf_counter()
        assert s.recv(100) == b''  # closed after the handler's timeout, no answer
        assert time.perf_counter() - t0 < 20


def test_upload_limit_is_the_image_file_size(server):
    """32 MB of image file, not of base64 text: a 30 MB file (40 MB as base64) is accepted."""
    port, app = server
    limit = app.limits['max_image_bytes']
    assert limit == 32 * 2**20
    small = png_bytes()
    body = segment_body(image=data_url(small + bytes(limit - len(small))))  # trailing bytes: ignored
    assert len(body) > 4 * limit // 3  # what used to be refused as "larger than 32 MB"
    status, res = raw(port, 'POST', '/segment', body, timeout=120)
    assert status == 200 and (res['width'], res['height']) == (70, 45), res
    status, res = raw(port, 'POST', '/segment',
                      segment_body(image=data_url(small + bytes(limit + 1 - len(small)))),
                      timeout=120)
    assert status == 413 and 'image file has 32.0 MB' in res['error'] and 'up to 32 MB' in \
        res['error']
    # a request that cannot fit is refused from its Content-Length, before reading it
    status, res = raw(port, 'POST', '/segment', b'{}', length=str(
        web_demo.max_body_bytes(limit) + 1))
    assert status == 413 and 'image files of up to 32 MB' in res['error']


def test_pixel_and_class_limits(server, monkeypatch):
    port, app = server
    before = app.inferencer.calls
    assert app.limits['max_pixels'] == 12_000_000
    big = png_bytes(Image.new('1', (4000, 3001)))  # 12.0 MP in a few kB
    status, res = raw(port, 'POST', '/segment', segment_body(image=data_url(big)))
    assert status == 413 and '4000x3001 = 12.0 MP' in res['error'] and 'up to 12 MP' in res['error']
    # the 9000x9000 case of the issue is refused from the header, before decoding the pixels
    monkeypatch.setattr(web_demo.ImageOps, 'exif_transpose', lambda im: pytest.fail('decoded'))
    with pytest.raises(web_demo.TooLarge, match='9000x9000 = 81.0 MP'):
        web_demo.decode_data_url(data_url(png_bytes(Image.new('1', (9000, 9000)))))
    monkeypatch.undo()
    names = [f'c{i}' for i in range(201)]
    for classes, msg in (('; '.join(names), '201 classes; this page accepts up to 200'),
                         ('; '.join(f'{n}, {n}a, {n}b' for n in names[:134]),
                          '402 names (synonyms included); this page accepts up to 400'),
                         ('sky; ' + 'x' * 101, 'has 101 characters')):
        status, res = raw(port, 'POST', '/segment', segment_body(classes=classes))
        assert status == 413 and msg in res['error'], res
    assert app.inferencer.calls == before
    # at the limits: accepted
    classes = '; '.join(names[:199]) + '; ' + 'y' * 100
    status, res = raw(port, 'POST', '/segment', segment_body(classes=classes), timeout=120)
    assert status == 200 and res['num_classes'] == 200 and len(
        [e for e in res['legend'] if e['name'] != 'unlabeled']) == 200


def exif_png(tmp_path, orientation=6):
    exif = Image.Exif()
    exif[0x0112] = orientation  # 6: the camera was turned; show the stored pixels rotated 90 deg
    path = tmp_path / 'turned.png'
    path.write_bytes(png_bytes(exif=exif.tobytes()))
    return path


def test_exif_orientation_as_the_api(server, tmp_path):
    """The page applies EXIF orientation, as DeCLIPInferencer does for a path (cv2) and a PIL image."""
    port, app = server
    path = exif_png(tmp_path)
    status, res = raw(port, 'POST', '/segment', segment_body(image=data_url(path.read_bytes())))
    assert status == 200 and (res['width'], res['height']) == (45, 70), res
    overlay = np.asarray(Image.open(io.BytesIO(base64.b64decode(res['overlay'].split(',')[1]))))
    inf = app.inferencer.inner
    by_path = inf(str(path), classes='sky; grass', mode='whole')
    by_pil = inf(Image.open(path), classes='sky; grass', mode='whole')
    turned = np.rot90(photo(), k=-1)  # orientation 6 = 90 deg clockwise
    np.testing.assert_array_equal(by_path.image, turned)
    np.testing.assert_array_equal(by_pil.image, turned)
    np.testing.assert_array_equal(overlay, by_path.overlay)
    np.testing.assert_array_equal(by_pil.overlay, by_path.overlay)


def test_queue_status(server):
    """While the model is busy, /status tells a waiting request how many are ahead of it."""
    port, app = server
    gate = app.inferencer
    gate.open.clear()
    gate.entered.clear()
    answers = {}

    def send(ticket):
        answers[ticket] = raw(port, 'POST', '/segment', segment_body(ticket=ticket), timeout=120)

    def status(ticket):
        return raw(port, 'GET', f'/status?ticket={ticket}')[1]

    def until(cond):
        for _ in range(400):
            if cond():
                return
            time.sleep(0.05)
        pytest.fail('timed out')

    threads = [threading.Thread(target=send, args=('first', ))]
    threads[0].start()
    until(gate.entered.is_set)
    until(lambda: status('first')['state'] == 'running')
    threads.append(threading.Thread(target=send, args=('second', )))
    threads[1].start()
    until(lambda: status('second')['state'] == 'waiting')
    st = status('second')
    assert st['ahead'] == 1 and st['waiting'] == 1 and st['seconds'] >= 0
    threads.append(threading.Thread(target=send, args=('third', )))
    threads[2].start()
    until(lambda: status('third').get('ahead') == 2)
    assert status('first')['state'] == 'running' and status('first')['ahead'] == 0
    assert status('third')['waiting'] == 2
    gate.open.set()
    for t in threads:
        t.join(120)
    assert all(answers[t][0] == 200 for t in ('first', 'second', 'third')), answers
    # the last run's duration is reported (the third ran at once after the gate: it may round to 0.0)
    last = status('first')['last_seconds']
    assert status('first')['state'] == 'unknown' and isinstance(last, float) and last >= 0


def area_resize(x, h, w):
    """Reference: the mean over each output pixel's input window [floor(i*H/h), ceil((i+1)*H/h)),
    rows then columns (adaptive average pooling), float64."""
    H, W = x.shape[-2:]
    rows = np.stack([x[..., i * H // h: -(-(i + 1) * H // h), :].mean(-2) for i in range(h)], -2)
    return np.stack([rows[..., j * W // w: -(-(j + 1) * W // w)].mean(-1) for j in range(w)], -1)


def test_kept_probability_maps_are_small(server, monkeypatch):
    """The page keeps 8-bit maps of at most 1024 px on the long side, not (C, H, W) float16 at full
    resolution, and drops the oldest results beyond PROB_BUDGET bytes."""
    from declip_mm.apis.overlay import prob_heatmap
    port, app = server
    img = np.asarray(Image.fromarray(photo()).resize((1100, 600), Image.BICUBIC))
    body = segment_body(classes='sky; grass; road', image=data_url(png_bytes(img)))
    status, res = raw(port, 'POST', '/segment', body, timeout=120)
    assert status == 200, res
    kept = app.results[res['id']]
    assert kept.dtype == np.uint8 and kept.shape == (3, 559, 1024)
    probs = app.inferencer.inner(img, classes='sky; grass; road', mode='whole').probs
    ref = area_resize(probs.astype(np.float64), 559, 1024)
    assert np.abs(kept / 255 - ref).max() <= 0.5 / 255 + 1e-5  # rounding to 256 levels only
    conn_status, png = raw(port, 'GET', f"/prob/{res['id']}/1.png")
    assert conn_status == 200
    served = np.asarray(Image.open(io.BytesIO(png)))
    np.testing.assert_array_equal(served, prob_heatmap(kept[1] / 255))
    colour_step = np.abs(np.diff(prob_heatmap(np.linspace(0, 1, 256)).astype(int), axis=0)).max()
    assert np.abs(served.astype(int) - prob_heatmap(ref[1]).astype(int)).max() <= colour_step
    # beyond the byte budget the oldest result goes; the newest stays
    monkeypatch.setattr(web_demo, 'PROB_BUDGET', int(kept.nbytes * 1.5))
    status, res2 = raw(port, 'POST', '/segment', body, timeout=120)
    assert status == 200 and res['id'] not in app.results and res2['id'] in app.results
    assert raw(port, 'GET', f"/prob/{res['id']}/1.png")[0] == 404
    assert raw(port, 'GET', f"/prob/{res2['id']}/1.png")[0] == 200


def test_busy_port_fails_before_the_model_is_built(monkeypatch):
    built = []
    monkeypatch.setattr(web_demo, 'build_app', lambda args: built.append(args))
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(SystemExit, match=f'cannot listen on 127.0.0.1:{port}.*--port'):
            web_demo.make_server(web_demo.parse_args(['--port', str(port)]))
    assert built == []
