#!/usr/bin/env python
"""The web page as a Gradio app (optional: ``pip install 'declip_mm[demo]'``), e.g. for a Hugging
Face Space. Same arguments, model and input limits as ``tools/web_demo.py``:

    python tools/gradio_demo.py [--config CONFIG] [--checkpoint CKPT] [--text-checkpoint CLIP]
                                [--host 127.0.0.1] [--port 7860] [--allow-host NAME] [--max-pixels N]

Underneath it is ``tools/web_demo.py``'s ``SegmentationApp``: the same ``DeCLIPInferencer``, the same
checks of the image (file bytes, pixels from the header before decoding, EXIF orientation) and of the
class list (classes, names, name length: class names only, never a file), and the same downloads
(the label PNG and the probabilities ``.npz``, the bytes ``DeCLIPInferencer.save`` writes). Gradio's
queue runs one segmentation at a time and shows each waiting browser its place in the queue.

Offline: usage analytics off (``GRADIO_ANALYTICS_ENABLED=False``, ``analytics_enabled=False``), no
share link, no server-side rendering, the theme's fonts served by the app itself (Gradio 6 ships
them), Hugging Face Hub offline. The app runs under uvicorn with a Host-header allow-list (loopback,
the ``--host`` address, ``--allow-host`` names), as the stdlib page: a DNS-rebinding page is refused.
"""
import os

os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')  # read when gradio is imported
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('HF_HUB_DISABLE_TELEMETRY', '1')

import base64  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os.path as osp  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections import OrderedDict  # noqa: E402

from PIL import Image  # noqa: E402

GRADIO_RANGE = '>=6,<7'  # the extra's range (setup.py: declip_mm[demo]); tested with 6.31
DEFAULT_CLASSES = 'person, astronaut; sky; flag; rocket; grass'


def load_web_demo():
    """tools/web_demo.py as a module (tools/ is not a package)."""
    path = osp.join(osp.dirname(osp.abspath(__file__)), 'web_demo.py')
    spec = importlib.util.spec_from_file_location('declip_tool_web_demo_for_gradio', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


web_demo = load_web_demo()


def import_gradio():
    try:
        import gradio as gr
    except ImportError as e:
        raise SystemExit(f'Gradio is not installed ({e}): pip install "declip_mm[demo]" (or '
                         f'pip install "gradio{GRADIO_RANGE}"); tools/web_demo.py needs no extra '
                         'package') from None
    return gr


class GradioSegmenter:
    """The app's callback: a photo file Gradio received, the class text, the mode, the threshold ->
    overlay, legend rows, the two download files, a status line."""

    def __init__(self, app, keep: int = 8) -> None:
        self.app = app
        self.tmp = tempfile.mkdtemp(prefix='declip_gradio_')
        self.dirs: OrderedDict = OrderedDict()  # result id -> its download folder
        self.keep = keep

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __call__(self, image_file, classes, mode, prob_thd):
        gr = import_gradio()
        if not image_file:
            raise gr.Error('upload a photo first')
        from gradio.utils import get_upload_folder, is_in_or_equal
        if not is_in_or_equal(osp.abspath(image_file), get_upload_folder()):  # belt and braces
            raise gr.Error('the photo must be uploaded through the page')
        try:  # the file Gradio stored for this upload, checked as the page's data URL
            with open(image_file, 'rb') as f:
                raw = f.read(self.app.limits['max_image_bytes'] + 1)
            url = 'data:image/any;base64,' + base64.b64encode(raw).decode()
            res = self.app.segment(dict(image=url, classes=classes or '', prob_thd=prob_thd,
                                        mode=mode or 'benchmark'))
        except (ValueError, TypeError, FileNotFoundError) as e:  # TooLarge is a ValueError
            raise gr.Error(str(e)) from None
        overlay = Image.open(io.BytesIO(base64.b64decode(res['overlay'].split(',', 1)[1])))
        legend = [[e['name'], ', '.join(e['synonyms']), round(100 * e['area'], 1)]
                  for e in res['legend']]
        rid = res['id']
        folder = osp.join(self.tmp, rid)
        os.makedirs(folder)
        files = []
        for kind in ('labels.png', 'probs.npz'):
            try:
                body, _ = self.app.download(rid, kind)
            except web_demo.TooLarge:  # the label PNG is always there; huge .npz files are not
                files.append(None)
                continue
            path = osp.join(folder, f"declip_{rid}_{kind}")
            with open(path, 'wb') as f:
                f.write(body)
            files.append(path)
        self.dirs[rid] = folder
        while len(self.dirs) > self.keep:
            shutil.rmtree(self.dirs.popitem(last=False)[1], ignore_errors=True)
        status = (f"done in {res['seconds']:.2f} s ({res['mode']}), {res['width']}x{res['height']} px"
                  + ('' if files[1] else ' (probabilities too large to offer here: tools/demo.py)'))
        return overlay, legend, files[0], files[1], status


def build_blocks(app, gr=None):
    """The Gradio Blocks of the page (no server)."""
    gr = gr or import_gradio()
    info = app.info()
    lim = app.limits
    segmenter = GradioSegmenter(app)
    with gr.Blocks(title='declip_mm open-vocabulary segmentation', analytics_enabled=False) as demo:
        gr.Markdown(f"### declip_mm: open-vocabulary segmentation\n{info['model']} / "
                    f"{info['backbone']}, protocol {info['protocol']}")
        if info['random_weights']:
            gr.Markdown(f"**{info['random_weights']}**", elem_id='banner')
        with gr.Row():
            image = gr.Image(type='filepath', image_mode=None, sources=['upload'], label='Photo',
                             elem_id='photo')
            with gr.Column():
                classes = gr.Textbox(value=DEFAULT_CLASSES, label='Classes', elem_id='classes',
                                     info='";" between classes, "," between synonyms')
                mode = gr.Radio(['benchmark', 'quick'], value='benchmark', label='Mode',
                                info='benchmark: the config\'s test protocol; quick: the whole '
                                     'resized image at once', elem_id='mode')
                thd = gr.Textbox(value='', label='Min. confidence', elem_id='prob_thd',
                                 info="empty: the config's prob_thd")
                button = gr.Button('Segment', variant='primary', elem_id='segment')
                gr.Markdown(f"Limits: image files up to {lim['max_image_bytes'] / 2**20:g} MB and "
                            f"{lim['max_pixels'] / 1e6:g} MP, up to {lim['max_classes']} classes, "
                            f"{lim['max_names']} names, {lim['max_name_length']} characters per "
                            'name.', elem_id='limits')
        status = gr.Markdown(elem_id='status')
        with gr.Row():
            overlay = gr.Image(type='pil', label='Overlay', interactive=False, elem_id='overlay')
            legend = gr.Dataframe(headers=['class', 'synonyms', 'area %'], label='Legend',
                                  interactive=False, elem_id='legend')
        with gr.Row():
            labels_file = gr.File(label='Labels (16-bit PNG)', elem_id='dl-labels')
            probs_file = gr.File(label='Probabilities (.npz)', elem_id='dl-probs')
        button.click(segmenter, [image, classes, mode, thd],
                     [overlay, legend, labels_file, probs_file, status], concurrency_limit=1,
                     api_name='segment')
    demo.queue(default_concurrency_limit=1)
    demo.segmenter = segmenter
    return demo


def host_guard(asgi_app, allowed_hosts):
    """ASGI middleware: requests (HTTP and websocket) whose Host is not in the allow-list get 403."""
    allowed = set(web_demo.LOOPBACK_NAMES) | {h.lower() for h in allowed_hosts}

    async def guarded(scope, receive, send):
        if scope['type'] in ('http', 'websocket'):
            host = dict(scope.get('headers') or []).get(b'host', b'').decode('latin-1')
            if web_demo.host_name(host) not in allowed:
                if scope['type'] == 'websocket':
                    await send({'type': 'websocket.close', 'code': 1008})
                    return
                body = json.dumps(dict(error=f'Host {host!r} is not allowed: this server answers '
                                             f'requests for {", ".join(sorted(allowed))} only '
                                             '(start it with --allow-host NAME to add a name)')).encode()
                await send({'type': 'http.response.start', 'status': 403,
                            'headers': [(b'content-type', b'application/json'),
                                        (b'content-length', str(len(body)).encode())]})
                await send({'type': 'http.response.body', 'body': body})
                return
        await asgi_app(scope, receive, send)

    return guarded


def make_server(args):
    """(uvicorn server, its bound socket, app, blocks). The port is bound before the model is built.

    The allow-list and the warning off loopback are the stdlib page's (``web_demo.make_server``).
    """
    gr = import_gradio()
    import fastapi
    import uvicorn
    host = args.host.strip('[]')
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, args.port))
    except (OSError, OverflowError) as e:
        sock.close()
        raise SystemExit(f'cannot listen on {args.host}:{args.port}: {getattr(e, "strerror", 0) or e}: '
                         'pass --port N, or --port 0 for any free port') from None
    sock.listen(64)
    allowed = list(args.allow_host)
    wildcard = host in ('0.0.0.0', '::', '')
    if not wildcard:
        allowed.append(host)
    if not web_demo.is_loopback(host):
        print(f'WARNING: --host {args.host} is not a loopback address: the Gradio app is reachable '
              'from other machines, with no authentication and no TLS. Requests must name the '
              f'server as one of: {", ".join(sorted(set(web_demo.LOOPBACK_NAMES) | set(allowed)))}'
              + (' (add the name clients use with --allow-host NAME)' if wildcard else ''),
              file=sys.stderr)
    try:
        app = web_demo.build_app(args)
        blocks = build_blocks(app, gr)
        api = fastapi.FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        port = sock.getsockname()[1]
        api = gr.mount_gradio_app(api, blocks, path='', server_name=host, server_port=port,
                                  footer_links=[], ssr_mode=False, pwa=False, mcp_server=False,
                                  max_file_size=int(app.limits['max_image_bytes']),
                                  theme=gr.themes.Default())
        # Gradio accepts a file path in an input only from its upload folder once ``has_launched``
        # is set; launch() sets it, mount_gradio_app() does not (without it any file the server
        # process can read, e.g. a PNG in the working directory, could be named as the photo)
        blocks.has_launched = True
    except BaseException:
        sock.close()
        raise
    config = uvicorn.Config(host_guard(api, allowed), log_level='warning', lifespan='on')
    return uvicorn.Server(config), sock, app, blocks


def main(argv=None):
    args = web_demo.parse_args(argv)
    server, sock, _, blocks = make_server(args)
    host, port = sock.getsockname()[:2]
    shown = f'[{host}]' if ':' in host else host
    print(f'declip_mm gradio demo on http://{shown}:{port}  (Ctrl-C stops it)')
    sys.stdout.flush()
    try:
        server.run(sockets=[sock])
    finally:
        blocks.segmenter.close()
        sock.close()


if __name__ == '__main__':
    main()
