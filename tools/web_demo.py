#!/usr/bin/env python
"""A local web page for open-vocabulary segmentation: upload a photo, type class names, look.

    python tools/web_demo.py [--config CONFIG] [--checkpoint CKPT] [--text-checkpoint CLIP]
                             [--port 7860] [--device cpu] [--cfg-options k=v ...]

Open http://127.0.0.1:7860 . The page shows the overlay, a legend with each class's share of the
pixels, and the probability map of a chosen class; "benchmark protocol" runs the config's test
scheme (sliding 336 windows for the training-free configs), "quick" the whole resized image at once.

Without weights (no --checkpoint and the config's weight files absent) it runs a tiny tower with
RANDOM weights (or --random-arch, e.g. EVA02-B-16, with random weights) and says so on the page:
the page works, the segmentation is meaningless. The server listens on 127.0.0.1 only, uses Python's
standard ``http.server`` and needs no network; sample photos come from scikit-image when installed.
"""
import argparse
import base64
import io
import json
import os.path as osp
import re
import sys
import threading
import time
import uuid
from collections import OrderedDict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from mmengine.config import DictAction
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
HOST = '127.0.0.1'
MAX_UPLOAD = 32 * 1024 * 1024
SAMPLES = ('astronaut', 'chelsea', 'coffee', 'rocket')  # shipped inside scikit-image's wheel
PAGE = osp.join(ROOT, 'tools', 'web_demo.html')


def png_data_url(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format='PNG')
    return 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode()


def decode_data_url(url: str) -> np.ndarray:
    m = re.match(r'data:image/[\w.+-]+;base64,(.*)$', url or '', re.S)
    if not m:
        raise ValueError('the image must be a data URL (data:image/...;base64,...)')
    try:
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(m.group(1)))).convert('RGB'))
    except Exception as e:
        raise ValueError(f'cannot decode the uploaded image: {e}') from e


def sample_photos() -> dict:
    """PNG bytes of scikit-image's bundled photos (none if scikit-image is missing)."""
    out = {}
    try:
        from skimage import data
    except ImportError:
        return out
    for name in SAMPLES:
        try:
            img = np.asarray(Image.fromarray(getattr(data, name)()).convert('RGB'))
        except Exception:  # absent from this scikit-image, or it would have to download it
            continue
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format='PNG')
        out[name] = buf.getvalue()
    return out


class SegmentationApp:
    """The model side of the page: one inferencer, results kept for the probability-map requests."""

    def __init__(self, inferencer, random_weights: str = '', keep: int = 8) -> None:
        self.inferencer = inferencer
        self.random_weights = random_weights
        self.lock = threading.Lock()  # one inference at a time: the segmentor's vocabulary is shared
        self.results: OrderedDict = OrderedDict()
        self.keep = keep
        self.samples = sample_photos()

    def info(self) -> dict:
        seg = self.inferencer.model
        return dict(model=type(seg).__name__, backbone=getattr(seg.backbone, 'name', '?'),
                    protocol=self.inferencer.default_mode, random_weights=self.random_weights,
                    samples=list(self.samples))

    def segment(self, payload: dict) -> dict:
        image = decode_data_url(payload.get('image'))
        classes = payload.get('classes') or ''
        mode = {'benchmark': None, 'quick': 'whole'}.get(payload.get('mode', 'benchmark'), 'bad')
        if mode == 'bad':
            raise ValueError("mode must be 'benchmark' or 'quick'")
        thd = payload.get('prob_thd')
        t0 = time.perf_counter()
        with self.lock:
            res = self.inferencer(image, classes=classes, mode=mode,
                                  prob_thd=None if thd in (None, '') else float(thd))
        seconds = time.perf_counter() - t0
        rid = uuid.uuid4().hex[:12]
        self.results[rid] = res.probs.astype(np.float16)
        while len(self.results) > self.keep:
            self.results.popitem(last=False)
        return dict(id=rid, width=int(image.shape[1]), height=int(image.shape[0]),
                    overlay=png_data_url(res.overlay), legend=res.legend, seconds=round(seconds, 3),
                    mode='quick' if mode else 'benchmark')

    def prob_map(self, rid: str, k: int) -> bytes:
        from declip_mm.apis.overlay import prob_heatmap
        probs = self.results.get(rid)
        if probs is None or not 0 <= k < probs.shape[0]:
            raise KeyError(f'no probability map {rid}/{k}')
        buf = io.BytesIO()
        Image.fromarray(prob_heatmap(probs[k].astype(np.float32))).save(buf, format='PNG')
        return buf.getvalue()


def make_handler(app: SegmentationApp, page: str):

    class Handler(BaseHTTPRequestHandler):
        server_version = 'declip-web-demo'

        def log_message(self, fmt, *args):  # keep the console for our own lines
            pass

        def _send(self, status, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header('Content-Type', ctype)
            self.send_header('Content-Length', str(len(body)))
            self.send_header('Cache-Control', 'no-store')
            self.end_headers()
            self.wfile.write(body)

        def _json(self, obj, status=HTTPStatus.OK) -> None:
            self._send(status, json.dumps(obj).encode(), 'application/json')

        def do_GET(self):
            path = self.path.split('?')[0]
            if path in ('/', '/index.html'):
                return self._send(HTTPStatus.OK, page.encode(), 'text/html; charset=utf-8')
            if path == '/info':
                return self._json(app.info())
            m = re.match(r'^/sample/(\w+)\.png$', path)
            if m and m.group(1) in app.samples:
                return self._send(HTTPStatus.OK, app.samples[m.group(1)], 'image/png')
            m = re.match(r'^/prob/(\w+)/(\d+)\.png$', path)
            if m:
                try:
                    return self._send(HTTPStatus.OK, app.prob_map(m.group(1), int(m.group(2))),
                                      'image/png')
                except KeyError as e:
                    return self._json(dict(error=str(e)), HTTPStatus.NOT_FOUND)
            return self._json(dict(error=f'not found: {path}'), HTTPStatus.NOT_FOUND)

        def do_POST(self):
            if self.path != '/segment':
                return self._json(dict(error='not found'), HTTPStatus.NOT_FOUND)
            n = int(self.headers.get('Content-Length') or 0)
            if n > MAX_UPLOAD:
                return self._json(dict(error=f'upload larger than {MAX_UPLOAD >> 20} MB'),
                                  HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            try:
                payload = json.loads(self.rfile.read(n) or b'{}')
                return self._json(app.segment(payload))
            except (ValueError, TypeError) as e:  # bad input: say what is wrong
                return self._json(dict(error=str(e)), HTTPStatus.BAD_REQUEST)
            except Exception as e:  # keep the server up; the page shows the message
                return self._json(dict(error=f'{type(e).__name__}: {e}'),
                                  HTTPStatus.INTERNAL_SERVER_ERROR)

    return Handler


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--config', default=None, help='config file or name (default: the ADE20K '
                   'training-free config, i.e. the benchmark protocol)')
    p.add_argument('--checkpoint', default=None, help='CLIP / DeCLIP / segmentor checkpoint')
    p.add_argument('--text-checkpoint', default=None, help='CLIP checkpoint of the text tower')
    p.add_argument('--random-arch', default=None,
                   help='without weights: random weights of this architecture (e.g. EVA02-B-16) '
                        'instead of the tiny tower')
    p.add_argument('--port', type=int, default=7860, help='port on 127.0.0.1 (0: any free port)')
    p.add_argument('--device', default=None)
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def build_app(args) -> SegmentationApp:
    """The inferencer the arguments describe; random towers when no weights are on disk."""
    from declip_mm.apis import DeCLIPInferencer
    from declip_mm.apis.inferencer import resolve_config
    cfg = resolve_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    model_cfg = cfg.model.get('module', cfg.model)
    wanted = [model_cfg.backbone.get('pretrained'), model_cfg.text_encoder.get('pretrained')]
    if args.text_checkpoint:
        wanted[1] = args.text_checkpoint
    have = [w for w in wanted if w and osp.isfile(w)]
    random_weights = ''
    if not args.checkpoint and len(have) < 2:
        from declip_mm.testing import tiny_clip_config
        arch = args.random_arch or dict(tiny_clip_config('eva02'), _delete_=True)
        name = args.random_arch or 'tiny EVA02-style tower'
        random_weights = (f'No weights found ({", ".join(str(w) for w in wanted)}): running a '
                          f'{name} with RANDOM weights. The page works; the segmentation is '
                          'meaningless. Pass --checkpoint (and --text-checkpoint) for real results.')
        opts = {'model.backbone.model_name': arch, 'model.text_encoder.model_name': arch,
                'model.backbone.pretrained': None, 'model.text_encoder.pretrained': None}
        if not args.random_arch:
            opts['model.text_encoder.templates'] = 'single'
        cfg.merge_from_dict(opts)
        print(random_weights)
    inferencer = DeCLIPInferencer(cfg, checkpoint=args.checkpoint, device=args.device,
                                  text_checkpoint=args.text_checkpoint)
    return SegmentationApp(inferencer, random_weights)


def make_server(args):
    """(server, app): a threading HTTP server bound to 127.0.0.1 (call ``serve_forever``)."""
    app = build_app(args)
    with open(PAGE, encoding='utf-8') as f:
        page = f.read()
    server = ThreadingHTTPServer((HOST, args.port), make_handler(app, page))
    server.daemon_threads = True
    return server, app


def main(argv=None):
    args = parse_args(argv)
    server, _ = make_server(args)
    print(f'declip_mm web demo on http://{HOST}:{server.server_address[1]}  (Ctrl-C stops it)')
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == '__main__':
    main()
