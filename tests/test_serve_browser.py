"""The ``ehead serve`` page in headless Chromium (Debian's ``chromium``), driven over the DevTools
protocol: a WAV is the microphone (``--use-file-for-fake-audio-capture``), a sample clip the agent's
voice (picked in the page's file input); motion frames must arrive, the head on the canvas must move,
the state must go from listening to speaking, and the server-rendered JPEG toggle must show frames.
Skipped where Chromium is absent; ``make test-browser`` runs it. ``EHEAD_SCREENSHOT=FILE`` keeps a
screenshot of the page (docs/serve-page.png is one)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from serving import running_server

from ehead_cli.generate.generator import Generator
from ehead_cli.serve.session import ServeConfig

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
         "--autoplay-policy=no-user-gesture-required", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
         "--window-size=960,720", "--remote-debugging-port=0"]
WAIT_S = 90.0


class DevTools:
    """The few DevTools-protocol calls the test needs, over one page target's WebSocket."""

    def __init__(self, url: str):
        from websockets.sync.client import connect

        self.ws = connect(url, max_size=None, open_timeout=30).__enter__()
        self.n = 0

    def call(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def js(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = WAIT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}; page status: {self.js('window.ehead && ehead.status()')}")


def start_chromium(profile: Path, mic_wav: Path) -> tuple[subprocess.Popen, DevTools]:
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}",
                             f"--use-file-for-fake-audio-capture={mic_wav}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while not port_file.is_file() or not port_file.read_text().strip():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("chromium did not start")
        time.sleep(0.1)
    port = int(port_file.read_text().split()[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
        page = next(t for t in json.loads(r.read()) if t["type"] == "page")
    return proc, DevTools(page["webSocketDebuggerUrl"])


def screenshot(dt: DevTools, suffix: str) -> None:
    """With EHEAD_SCREENSHOT=path.png, the page as it is now goes to path{suffix}.png."""
    if os.environ.get("EHEAD_SCREENSHOT"):
        import base64

        target = Path(os.environ["EHEAD_SCREENSHOT"])
        target.with_name(target.stem + suffix + target.suffix).write_bytes(
            base64.b64decode(dt.call("Page.captureScreenshot", format="png")["data"]))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_page_talks_with_the_avatar(tmp_path):
    import soundfile as sf

    from ehead_cli.io.audio import load_audio

    mic = load_audio(REPO / "sample_data" / "clips" / "conv009_fr.flac")[: 12 * 16000]
    sf.write(tmp_path / "mic.wav", 0.5 * mic, 16000, subtype="PCM_16")  # Chromium loops it as the microphone
    agent = tmp_path / "agent.wav"
    sf.write(agent, load_audio(REPO / "sample_data" / "clips" / "conv000_en.flac")[: 6 * 16000], 16000,
             subtype="PCM_16")
    gen = Generator.from_checkpoint()  # the shipped demo model: it listens and speaks visibly
    with running_server(gen, config=ServeConfig(hop=5)) as (addr, srv):
        proc, dt = start_chromium(tmp_path / "profile", tmp_path / "mic.wav")
        try:
            dt.call("Page.enable")
            dt.call("Emulation.setDeviceMetricsOverride", width=960, height=640, deviceScaleFactor=1, mobile=False)
            dt.call("Page.navigate", url=f"http://{addr}/")
            dt.wait_for("window.ehead && window.ehead.ready", "the head model to load")
            before = np.array(dt.js("ehead.signature()"), np.float64)
            assert before.std() > 5  # the head is drawn, not a blank canvas
            root = dt.call("DOM.getDocument")["root"]["nodeId"]
            node = dt.call("DOM.querySelector", nodeId=root, selector="#agent-file")["nodeId"]
            dt.call("DOM.setFileInputFiles", nodeId=node, files=[str(agent)])
            dt.js("document.getElementById('start').click()")
            dt.wait_for("ehead.status().connected", "the WebSocket session")
            dt.js("ehead.streamAgent()")
            dt.wait_for("ehead.status().frames >= 100 && ehead.status().shown >= 0", "the first window")
            dt.wait_for("ehead.status().state === 1", "a speaking frame shown")  # the agent's voice, first
            seen = [np.array(dt.js("ehead.signature()"), np.float64)]
            for _ in range(3):
                time.sleep(0.5)
                seen.append(np.array(dt.js("ehead.signature()"), np.float64))
            moves = [np.abs(a - b).mean() for a, b in zip(seen, seen[1:], strict=False)]
            assert max(moves) > 0.05, moves  # the head moves while the frames play
            screenshot(dt, "")
            # speech to drawn frame, on the page, against the server's receipt-to-send figure: never less,
            # and at most the page's jitter buffer (LEAD_S, 250 ms) and two frames more
            page = dt.js("ehead.latency()")
            server = srv.batcher.summary()["per_session"][0]["latency_ms"]
            assert page["n"] > 20 and server["n"] > 20, (page, server)
            assert server["p50"] - 20 <= page["p50"] <= server["p95"] + 250 + 80 + 50, (page, server)
            dt.wait_for("ehead.status().state === -1 && ehead.status().frames >= 200", "listening after speaking")
            dt.js("document.getElementById('jpeg').click()")
            dt.wait_for("ehead.status().jpegs >= 50", "server-rendered JPEG frames")
            dt.wait_for("(f => f.style.display === 'block' && f.complete && f.naturalWidth === 256)"
                        "(document.getElementById('frame'))", "the JPEG view")
            screenshot(dt, "-jpeg")
            status = dt.js("ehead.status()")
            assert status["connected"] and status["error"] == "", status
            stats = srv.batcher.summary()
            assert stats["sessions"] == 1 and stats["per_session"][0]["agent_audio_s"] > 5.9
        finally:
            dt.ws.close()
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
