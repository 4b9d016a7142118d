// The microphone at the audio context's rate -> 16 kHz mono PCM16 chunks of 320 samples (20 ms),
// posted to the page. Resampling: a box filter over one output period, then linear interpolation.
class Capture16k extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / 16000;  // input samples per output sample
    this.pos = 0;                    // position of the next output sample, in input samples
    this.prev = 0;                   // the last filtered input sample of the previous block
    this.out = new Int16Array(320);
    this.n = 0;
    this.width = Math.max(1, Math.round(this.step));
    this.hist = new Float32Array(this.width);  // the box filter's recent inputs
    this.h = 0;
    this.sum = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const ch = input[0];
    const filtered = new Float32Array(ch.length);
    for (let i = 0; i < ch.length; i++) {
      let x = 0;
      for (let c = 0; c < input.length; c++) x += input[c][i];
      x /= input.length;
      this.sum += x - this.hist[this.h];
      this.hist[this.h] = x;
      this.h = (this.h + 1) % this.width;
      filtered[i] = this.sum / this.width;
    }
    // this.pos counts from this block's first sample; -1 is the previous block's last (this.prev)
    while (this.pos < ch.length - 1) {
      const i = Math.floor(this.pos), f = this.pos - i;
      const a = i < 0 ? this.prev : filtered[i], b = filtered[i + 1];
      const y = Math.max(-1, Math.min(1, a + (b - a) * f));
      this.out[this.n++] = Math.round(y * 32767);
      if (this.n === this.out.length) {
        this.port.postMessage(this.out.slice());
        this.n = 0;
      }
      this.pos += this.step;
    }
    this.pos -= ch.length;
    this.prev = filtered[ch.length - 1];
    return true;
  }
}

registerProcessor("capture-16k", Capture16k);
