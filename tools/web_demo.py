#!/usr/bin/env python
"""A local web page for open-vocabulary segmentation: upload a photo, type class names, look.

    python tools/web_demo.py [--config CONFIG] [--checkpoint CKPT] [--text-checkpoint CLIP]
                             [--host 127.0.0.1] [--port 7860] [--device cpu] [--cfg-options k=v ...]

Open http://127.0.0.1:7860 . The page shows the overlay, a legend with each class's share of the
pixels, and the probability map of a chosen class; "benchmark protocol" runs the config's test
scheme (sliding 336 windows for the training-free configs), "quick" the whole resized image at once.

Without weights (no --config, no --checkpoint and the default config's weight files absent) it runs
the miniature world's towers (docs/miniworld.md: a tiny CLIP learned from scratch on synthetic 64-px
scenes, shipped in the repository or cached by the quick-start) with the world's class names and
world sample scenes, and the banner says what they are. Where those towers are neither shipped nor
cached, or with --random-weights, it runs a tiny tower with RANDOM weights (or --random-arch, e.g.
EVA02-B-16, with random weights) and says so on the page: the page works, the segmentation is
meaningless. The server listens on 127.0.0.1 (``--host`` another address, with a warning: no
authentication), uses Python's standard ``http.server`` and needs no network; sample photos come
from scikit-image when installed.

What the server accepts (anything else gets a 4xx answer with a message, never a traceback):
- every request: a ``Host`` of 127.0.0.1 / localhost / [::1] (any port), the ``--host`` address, or
  one named with ``--allow-host`` (a DNS-rebinding page sends its own host name and is refused);
- ``POST /segment``: ``Content-Type: application/json``, a valid ``Content-Length``, an ``Origin``
  (when the browser sends one) equal to the ``Host`` it was sent to (no cross-site posting), and a
  JSON object ``{image: data URL, classes: "cat; grass, lawn", mode, prob_thd, ticket}``. The Classes
  text is always class names, never a file name on the server. The image file (after base64
  decoding) may have up to ``--max-image-mb`` MB and ``--max-pixels`` pixels; at most
  ``--max-classes`` classes and ``--max-names`` names of ``--max-name-length`` characters.
  EXIF orientation is applied, as the browser's preview and ``DeCLIPInferencer`` do.
- ``GET /download/ID/labels.png`` and ``GET /download/ID/probs.npz``: result ``ID``'s label map
  (16-bit PNG) and probabilities (float16 ``.npz``), the bytes ``DeCLIPInferencer.save`` writes,
  made in memory (``ID`` names a kept result, never a file);
- ``GET /status?ticket=T``: where request ``T`` is (waiting behind N others, or running for S s),
  which the page shows while it waits; one segmentation runs at a time.

The probability maps kept for the page's class menu are 8-bit, at most ``PROB_SIDE`` px on the long
side (the page shows them at <= 420 px), and the oldest results are dropped beyond ``PROB_BUDGET``.
"""
import argparse
import base64
import io
import ipaddress
import json
import math
import os.path as osp
import re
import socket
import sys
import threading
import time
import uuid
from collections import OrderedDict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
from mmengine.config import DictAction
from PIL import Image, ImageOps

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
HOST = '127.0.0.1'
LOOPBACK_NAMES = ('127.0.0.1', 'localhost', '::1')
MAX_IMAGE_MB = 32             # the image file's own bytes (decoded from base64), not the request's
MAX_PIXELS = 12_000_000       # 12 MP: e.g. 4000x3000
MAX_CLASSES = 200
MAX_NAMES = 400               # names over all classes (synonyms included)
MAX_NAME_LENGTH = 100         # characters per name
FIELDS_BYTES = 1 << 20        # room for the other JSON fields (class text, mode, ...)
PROB_SIDE = 1024              # kept probability maps: long side at most this (shown at <= 420 px)
PROB_BUDGET = 256 << 20       # bytes of kept probability maps over all kept results
DOWNLOAD_PROBS_BYTES = 1 << 30  # largest probabilities download (float16 classes x H x W)
SAMPLES = ('astronaut', 'chelsea', 'coffee', 'rocket')  # shipped inside scikit-image's wheel
PAGE = osp.join(ROOT, 'tools', 'web_demo.html')


def png_data_url(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format='PNG')
    return 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode()


class TooLarge(ValueError):
    """An input over one of the page's limits (answered with 413)."""


def max_body_bytes(max_image_bytes: int) -> int:
    """The request size that carries an image file of ``max_image_bytes`` as base64 text."""
    return 4 * math.ceil(max_image_bytes / 3) + FIELDS_BYTES


def decode_data_url(url, max_bytes: int = MAX_IMAGE_MB << 20,
                    max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A ``data:image/...;base64,`` URL -> (H, W, 3) uint8 RGB, EXIF orientation applied.

    The file size (after base64 decoding) and the pixel count (read from the header, before the
    pixels are decoded) are checked first: :class:`TooLarge` names the limit.
    """
    if not isinstance(url, str):
        raise TypeError('the image must be a data URL string (data:image/...;base64,...)')
    m = re.match(r'data:image/[\w.+-]+;base64,(.*)$', url, re.S)
    if not m:
        raise ValueError('the image must be a data URL (data:image/...;base64,...)')
    try:
        raw = base64.b64decode(m.group(1))
    except Exception as e:
        raise ValueError(f'the image is not valid base64: {e}') from e
    if len(raw) > max_bytes:
        raise TooLarge(f'the image file has {len(raw) / 2**20:.1f} MB; this page accepts image '
                       f'files of up to {max_bytes / 2**20:g} MB (--max-image-mb)')
    try:
        img = Image.open(io.BytesIO(raw))
    except Exception as e:
        raise ValueError(f'cannot decode the uploaded image: {e}') from e
    w, h = img.size
    if w * h > max_pixels:
        raise TooLarge(f'the image has {w}x{h} = {w * h / 1e6:.1f} MP; this page accepts up to '
                       f'{max_pixels / 1e6:g} MP (--max-pixels): scale it down, or use '
                       'tools/demo.py')
    if w * h == 0:
        raise ValueError(f'the image is empty ({w}x{h})')
    try:
        return np.asarray(ImageOps.exif_transpose(img).convert('RGB'))
    except Exception as e:
        raise ValueError(f'cannot decode the uploaded image: {e}') from e


def shown_probs(probs: np.ndarray, side: int = PROB_SIDE) -> np.ndarray:
    """(C, H, W) probabilities in [0, 1] -> (C, h, w) uint8 for the page's maps: long side at most
    ``side`` (area average), quantised to 256 levels (the heat map's colour table has 256)."""
    import torch
    import torch.nn.functional as F
    c, h, w = probs.shape
    t = torch.from_numpy(np.ascontiguousarray(probs, dtype=np.float32))
    scale = side / max(h, w)
    if scale < 1:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        t = F.interpolate(t[None], size=size, mode='area')[0]
    return (t.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


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
    """The model side of the page: one inferencer, results kept for the probability-map requests,
    the queue of waiting requests (one segmentation at a time)."""

    def __init__(self, inferencer, random_weights: str = '', keep: int = 8,
                 limits: dict = None, samples: dict = None, banner: str = '',
                 default_classes: str = '') -> None:
        self.inferencer = inferencer
        self.random_weights = random_weights
        self.banner = banner              # what the model is, when it is not random (world towers)
        self.default_classes = default_classes
        self.lock = threading.Lock()  # one inference at a time: the segmentor's vocabulary is shared
        self.results: OrderedDict = OrderedDict()
        self.keep = keep
        self.samples = sample_photos() if samples is None else samples
        self.limits = dict(max_image_bytes=MAX_IMAGE_MB << 20, max_pixels=MAX_PIXELS,
                           max_classes=MAX_CLASSES, max_names=MAX_NAMES,
                           max_name_length=MAX_NAME_LENGTH)
        self.limits.update(limits or {})
        self.queue_lock = threading.Lock()
        self.queue: OrderedDict = OrderedDict()  # ticket -> [state, time entered]
        self.last_seconds = None
        self.downloads: dict = {}  # result id -> (label PNG bytes, probability maps, classes)

    def info(self) -> dict:
        seg = self.inferencer.model
        vfm = getattr(seg, 'vfm', None)
        return dict(model=type(seg).__name__, backbone=getattr(seg.backbone, 'name', '?'),
                    attention=getattr(seg.backbone, 'attn_mode', '?'),
                    vfm=getattr(vfm, 'arch', '') if vfm is not None else '',
                    protocol=self.inferencer.default_mode, random_weights=self.random_weights,
                    samples=list(self.samples), limits=self.limits, banner=self.banner,
                    default_classes=self.default_classes)

    def status(self, ticket: str) -> dict:
        """Where request ``ticket`` is: waiting (``ahead`` requests before it) or running."""
        now = time.perf_counter()
        with self.queue_lock:
            tickets = list(self.queue)
            entry = self.queue.get(ticket)
            out = dict(waiting=sum(v[0] == 'waiting' for v in self.queue.values()),
                       last_seconds=self.last_seconds)
            if entry is None:
                return dict(out, state='unknown')
            ahead = tickets.index(ticket)
            return dict(out, state=entry[0], ahead=ahead, seconds=round(now - entry[1], 1))

    def check_classes(self, classes):
        """The class list, refused with a clear message when it is over the page's limits."""
        from declip_mm.apis import parse_classes
        if not isinstance(classes, (str, list)):
            raise TypeError(f'classes must be text like "cat; grass, lawn; sky", got '
                            f'{type(classes).__name__}')
        names = parse_classes(classes)  # a string is names only, never a file on the server
        lim = self.limits
        total = sum(len(g) for g in names)
        if len(names) > lim['max_classes']:
            raise TooLarge(f'{len(names)} classes; this page accepts up to {lim["max_classes"]} '
                           '(--max-classes)')
        if total > lim['max_names']:
            raise TooLarge(f'{total} names (synonyms included); this page accepts up to '
                           f'{lim["max_names"]} (--max-names)')
        long = [n for g in names for n in g if len(n) > lim['max_name_length']]
        if long:
            raise TooLarge(f'a class name has {len(long[0])} characters ({long[0][:30]!r}...); this '
                           f'page accepts up to {lim["max_name_length"]} (--max-name-length)')
        return names

    def segment(self, payload) -> dict:
        if not isinstance(payload, dict):
            raise TypeError('the request body must be a JSON object {"image": "data:image/...", '
                            f'"classes": "cat; grass, lawn", ...}}, got {type(payload).__name__}')
        lim = self.limits
        image = decode_data_url(payload.get('image'), lim['max_image_bytes'], lim['max_pixels'])
        classes = self.check_classes(payload.get('classes') or '')
        mode = {'benchmark': None, 'quick': 'whole'}.get(payload.get('mode', 'benchmark'), 'bad')
        if mode == 'bad':
            raise ValueError("mode must be 'benchmark' or 'quick'")
        thd = payload.get('prob_thd')
        if thd in (None, ''):
            thd = None
        else:
            try:
                thd = float(thd)
            except (TypeError, ValueError):
                raise ValueError(f'min. confidence must be a number in [0, 1], got {thd!r}') from None
            if not 0 <= thd <= 1:
                raise ValueError(f'min. confidence must be a number in [0, 1], got {thd!r}')
        ticket = payload.get('ticket')
        if not (isinstance(ticket, str) and re.fullmatch(r'[\w-]{1,40}', ticket)):
            ticket = uuid.uuid4().hex
        with self.queue_lock:
            self.queue[ticket] = ['waiting', time.perf_counter()]
        try:
            with self.lock:
                t0 = time.perf_counter()
                with self.queue_lock:
                    self.queue[ticket] = ['running', t0]
                res = self.inferencer(image, classes=classes, mode=mode, prob_thd=thd)
                seconds = time.perf_counter() - t0
                self.last_seconds = round(seconds, 2)
        finally:
            with self.queue_lock:
                self.queue.pop(ticket, None)
        rid = uuid.uuid4().hex[:12]
        self.results[rid] = shown_probs(res.probs)  # not the full-resolution float maps
        self.keep_downloads(rid, res)
        while len(self.results) > 1 and (len(self.results) > self.keep or sum(
                p.nbytes for p in self.results.values()) > PROB_BUDGET):
            self.downloads.pop(self.results.popitem(last=False)[0], None)
        return dict(id=rid, width=int(image.shape[1]), height=int(image.shape[0]),
                    overlay=png_data_url(res.overlay), legend=res.legend, seconds=round(seconds, 3),
                    mode='quick' if mode else 'benchmark', num_classes=len(classes),
                    downloads={k: f'/download/{rid}/{f}' for k, f in DOWNLOAD_FILES.items()})

    def keep_downloads(self, rid: str, res) -> None:
        """What the result's downloads are made of: the label PNG (16-bit, encoded now, as
        ``DeCLIPInferencer.save`` writes it) and the probability maps at the segmentor's resolution
        (the full-resolution ``.npz`` is computed when it is asked for)."""
        from declip_mm.apis.result_files import write_label_png
        buf = io.BytesIO()
        write_label_png(buf, res.labels)
        self.downloads[rid] = (buf.getvalue(), res.maps, [list(c) for c in res.classes])

    def download(self, rid: str, what: str):
        """(bytes, content type) of a result's ``labels.png`` or ``probs.npz``: the bytes
        ``DeCLIPInferencer.save`` writes to ``<name>_labels.png`` / ``<name>_probs.npz``."""
        from declip_mm.apis.result_files import probs_npz_bytes
        entry = self.downloads.get(rid)
        if entry is None or what not in DOWNLOAD_FILES.values():
            raise KeyError(f'no download {rid}/{what} (results are kept for the last {self.keep} '
                           'requests)')
        labels_png, maps, classes = entry
        if what == 'labels.png':
            return labels_png, 'image/png'
        h, w = maps.out_hw
        size = maps.num_classes * h * w * 2
        if size > DOWNLOAD_PROBS_BYTES:
            raise TooLarge(f'the probabilities of {maps.num_classes} classes at {w}x{h} are '
                           f'{size / 2**30:.1f} GB (float16); this page sends up to '
                           f'{DOWNLOAD_PROBS_BYTES / 2**30:g} GB: use tools/demo.py, which writes '
                           'the same file')
        return probs_npz_bytes(maps, classes), 'application/octet-stream'  # the maps' own copy

    def prob_map(self, rid: str, k: int) -> bytes:
        from declip_mm.apis.overlay import prob_heatmap
        probs = self.results.get(rid)
        if probs is None or not 0 <= k < probs.shape[0]:
            raise KeyError(f'no probability map {rid}/{k}')
        buf = io.BytesIO()
        Image.fromarray(prob_heatmap(probs[k].astype(np.float32) / 255)).save(buf, format='PNG')
        return buf.getvalue()


#: download kind -> file name in the URL (/download/<result id>/<file name>)
DOWNLOAD_FILES = {'labels': 'labels.png', 'probs': 'probs.npz'}


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost`` (any address of 127/8): not reachable from elsewhere."""
    if host.lower() == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host.strip('[]')).is_loopback
    except ValueError:
        return False


def host_name(netloc: str) -> str:
    """``'[::1]:7860'`` -> ``'::1'``, ``'LocalHost:80'`` -> ``'localhost'`` ('' if malformed)."""
    try:
        return (urlsplit('//' + netloc).hostname or '').lower()
    except ValueError:
        return ''


def make_handler(app: SegmentationApp, page: str, allowed_hosts=()):
    allowed = set(LOOPBACK_NAMES) | {h.lower() for h in allowed_hosts}
    max_body = max_body_bytes(app.limits['max_image_bytes'])

    class Handler(BaseHTTPRequestHandler):
        server_version = 'declip-web-demo'
        timeout = 60  # seconds a client may stall (e.g. a body shorter than its Content-Length)

        def log_message(self, fmt, *args):  # keep the console for our own lines
            pass

        def _send(self, status, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header('Content-Type', ctype)
            self.send_header('Content-Length', str(len(body)))
            self.send_header('Cache-Control', 'no-store')
            self.send_header('X-Content-Type-Options', 'nosniff')
            self.end_headers()
            self.wfile.write(body)

        def _json(self, obj, status=HTTPStatus.OK) -> None:
            self._send(status, json.dumps(obj).encode(), 'application/json')

        def _host_ok(self) -> bool:
            """Only loopback (or --allow-host) names: a DNS-rebinding page sends its own name."""
            host = self.headers.get('Host', '')
            if host_name(host) in allowed:
                return True
            self._json(dict(error=f'Host {host!r} is not allowed: this server answers requests '
                                  f'for {", ".join(sorted(allowed))} only (start it with '
                                  '--allow-host NAME to add a name)'), HTTPStatus.FORBIDDEN)
            return False

        def do_GET(self):
            if not self._host_ok():
                return
            url = urlsplit(self.path)
            path = url.path
            if path in ('/', '/index.html'):
                return self._send(HTTPStatus.OK, page.encode(), 'text/html; charset=utf-8')
            if path == '/info':
                return self._json(app.info())
            if path == '/status':
                return self._json(app.status(parse_qs(url.query).get('ticket', [''])[0]))
            m = re.match(r'^/sample/(\w+)\.png$', path)
            if m and m.group(1) in app.samples:
                return self._send(HTTPStatus.OK, app.samples[m.group(1)], 'image/png')
            m = re.match(r'^/download/(\w+)/(labels\.png|probs\.npz)$', path)
            if m:
                try:
                    body, ctype = app.download(m.group(1), m.group(2))
                except KeyError as e:
                    return self._json(dict(error=str(e.args[0])), HTTPStatus.NOT_FOUND)
                except TooLarge as e:
                    return self._json(dict(error=str(e)), HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
                self.send_response(HTTPStatus.OK)
                self.send_header('Content-Type', ctype)
                self.send_header('Content-Length', str(len(body)))
                self.send_header('Content-Disposition',
                                 f'attachment; filename="declip_{m.group(1)}_{m.group(2)}"')
                self.send_header('Cache-Control', 'no-store')
                self.send_header('X-Content-Type-Options', 'nosniff')
                self.end_headers()
                self.wfile.write(body)
                return None
            m = re.match(r'^/prob/(\w+)/(\d+)\.png$', path)
            if m:
                try:
                    return self._send(HTTPStatus.OK, app.prob_map(m.group(1), int(m.group(2))),
                                      'image/png')
                except KeyError as e:
                    return self._json(dict(error=str(e)), HTTPStatus.NOT_FOUND)
            return self._json(dict(error=f'not found: {path}'), HTTPStatus.NOT_FOUND)

        def _refuse(self, status, error):
            self.close_connection = True  # the body (if any) is left unread
            return self._json(dict(error=error), status)

        def do_POST(self):
            if not self._host_ok():
                return
            if self.path != '/segment':
                return self._refuse(HTTPStatus.NOT_FOUND, 'not found')
            origin = self.headers.get('Origin')
            if origin is not None:  # browsers send it; it must be this page's own origin
                parts = urlsplit(origin) if origin != 'null' else None
                if not (parts and parts.scheme in ('http', 'https')
                        and parts.netloc.lower() == self.headers.get('Host', '').lower()):
                    return self._refuse(HTTPStatus.FORBIDDEN, f'cross-origin request from '
                                        f'{origin!r} refused: post from this page only')
            ctype = self.headers.get_content_type()
            if ctype != 'application/json':
                return self._refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                                    f'Content-Type must be application/json, got {ctype!r}')
            length = self.headers.get('Content-Length')
            if length is None:
                return self._refuse(HTTPStatus.LENGTH_REQUIRED, 'Content-Length is required')
            if not re.fullmatch(r'\s*\d{1,12}\s*', length):
                return self._refuse(HTTPStatus.BAD_REQUEST, f'bad Content-Length {length!r}: it '
                                    'must be a number of bytes >= 0')
            n = int(length)
            if n > max_body:
                mb = app.limits['max_image_bytes'] / 2**20
                return self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                    f'request of {n / 2**20:.1f} MB: this page accepts image files '
                                    f'of up to {mb:g} MB (--max-image-mb; {max_body / 2**20:.1f} MB '
                                    'as base64 text with the other fields)')
            body = self.rfile.read(n)
            if len(body) < n:
                return self._refuse(HTTPStatus.BAD_REQUEST, f'body shorter than Content-Length '
                                    f'({len(body)} < {n} bytes)')
            try:
                payload = json.loads(body)
            except ValueError as e:
                return self._refuse(HTTPStatus.BAD_REQUEST, f'the body is not valid JSON: {e}')
            try:
                return self._json(app.segment(payload))
            except TooLarge as e:
                return self._json(dict(error=str(e)), HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            except (ValueError, TypeError, FileNotFoundError) as e:  # bad input: say what is wrong
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
    p.add_argument('--vfm', default=None, metavar='FILE',
                   help='a local VFM checkpoint: the page runs ProxyCLIP\'s proxy attention with it '
                        '(docs/method.md section 7; DeCLIPInferencer(vfm=...))')
    p.add_argument('--vfm-arch', default='dino_vitb8',
                   help='the VFM of --vfm (dino_vitb8, dinov2_vitb14_reg, sam_vitb, mae_vitb16)')
    p.add_argument('--random-arch', default=None,
                   help='without weights: random weights of this architecture (e.g. EVA02-B-16) '
                        'instead of the tiny tower')
    p.add_argument('--random-weights', action='store_true',
                   help='without weights: a tiny tower with random weights instead of the '
                        'miniature world\'s trained towers')
    p.add_argument('--host', default=HOST,
                   help='address to listen on (default 127.0.0.1: this machine only). Another address '
                        '(e.g. 0.0.0.0) makes the page reachable from the network, without '
                        'authentication: a warning is printed, and requests must name the server as '
                        'that address or an --allow-host name')
    p.add_argument('--port', type=int, default=7860, help='port (0: any free port)')
    p.add_argument('--device', default=None)
    p.add_argument('--allow-host', action='append', default=[], metavar='NAME',
                   help='also answer requests whose Host header names NAME (e.g. behind a reverse '
                        'proxy); by default only 127.0.0.1, localhost and [::1]')
    p.add_argument('--max-image-mb', type=float, default=MAX_IMAGE_MB,
                   help='largest image file (its own bytes, not the base64 text)')
    p.add_argument('--max-pixels', type=int, default=MAX_PIXELS, help='largest image (width x height)')
    p.add_argument('--max-classes', type=int, default=MAX_CLASSES)
    p.add_argument('--max-names', type=int, default=MAX_NAMES, help='names over all classes')
    p.add_argument('--max-name-length', type=int, default=MAX_NAME_LENGTH)
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
    world = None
    if (not args.checkpoint and len(have) < 2 and args.config is None and not args.text_checkpoint
            and not args.random_arch and not args.random_weights):
        from declip_mm.miniworld.world_demo import world_default
        world = world_default()  # the world towers (shipped or cached), None when absent
    if world is not None:
        cfg = resolve_config(world['config'])
        cfg.merge_from_dict(world['cfg_options'])
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        print(world['banner'])
    elif not args.checkpoint and len(have) < 2:
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
    proxy = {} if args.vfm is None else dict(vfm=args.vfm, vfm_arch=args.vfm_arch)
    inferencer = DeCLIPInferencer(cfg, checkpoint=args.checkpoint, device=args.device,
                                  text_checkpoint=args.text_checkpoint, **proxy)
    limits = dict(max_image_bytes=int(args.max_image_mb * 2**20), max_pixels=args.max_pixels,
                  max_classes=args.max_classes, max_names=args.max_names,
                  max_name_length=args.max_name_length)
    if world is None:
        return SegmentationApp(inferencer, random_weights, limits=limits)
    from declip_mm.miniworld.world_demo import world_samples
    samples = {}
    for name, img in world_samples().items():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format='PNG')
        samples[name] = buf.getvalue()
    return SegmentationApp(inferencer, limits=limits, samples=samples, banner=world['banner'],
                           default_classes=world['classes'])


def make_server(args):
    """(server, app): a threading HTTP server bound to ``--host`` (default 127.0.0.1; call
    ``serve_forever``).

    The port is bound before the model is built: a busy port fails at once with a message. A host
    that is not loopback gets a warning on stderr; the Host-header allow-list then also holds the
    bound address (a wildcard such as 0.0.0.0 names no host: add the names clients use with
    ``--allow-host``).
    """
    with open(PAGE, encoding='utf-8') as f:
        page = f.read()
    host = args.host.strip('[]')
    server_cls = ThreadingHTTPServer
    if ':' in host:  # an IPv6 address
        server_cls = type('ThreadingHTTPServerV6', (ThreadingHTTPServer,),
                          {'address_family': socket.AF_INET6})
    try:  # the handler is set once the model exists; nothing is served before serve_forever
        server = server_cls((host, args.port), BaseHTTPRequestHandler)
    except (OSError, OverflowError) as e:
        raise SystemExit(f'cannot listen on {args.host}:{args.port}: {getattr(e, "strerror", 0) or e} '
                         '(another web demo or program may use it, or the address is not one of '
                         "this machine's): pass --port N, or --port 0 for any free port") from None
    allowed = list(args.allow_host)
    wildcard = host in ('0.0.0.0', '::', '')
    if not wildcard:
        allowed.append(host)
    if not is_loopback(host):
        names = sorted(set(LOOPBACK_NAMES) | {h.lower() for h in allowed})
        print(f'WARNING: --host {args.host} is not a loopback address: the page is reachable from '
              'other machines, with no authentication and no TLS; anyone who reaches it can run '
              f'segmentations on this machine. Requests must name the server as one of: '
              f'{", ".join(names)}'
              + (' (a wildcard address names no host: add the name or address clients use with '
                 '--allow-host NAME)' if wildcard else ' (more with --allow-host NAME).'),
              file=sys.stderr)
        sys.stderr.flush()
    try:
        app = build_app(args)
    except BaseException:
        server.server_close()
        raise
    server.RequestHandlerClass = make_handler(app, page, allowed)
    server.daemon_threads = True
    return server, app


def main(argv=None):
    args = parse_args(argv)
    server, _ = make_server(args)
    host = server.server_address[0]
    shown = f'[{host}]' if ':' in host else host
    print(f'declip_mm web demo on http://{shown}:{server.server_address[1]}  (Ctrl-C stops it)')
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == '__main__':
    main()
