// The monitor's charts: items synced and failed per minute over the last hour, and the failure
// rate against the alert threshold. Loaded once from `syncStats`, then moved by the live
// events the page already receives: no polling. Drawn with the vendored uPlot; each chart's
// figcaption says in words what it shows, for screen readers and for anyone who would rather
// read (the canvas itself is hidden from assistive technology).
"use strict";

const HISTORY_BUCKETS = 60;
const HEIGHT = 150;

class History {
  // Buckets of outcomes, oldest first, as `syncStats` returns them.
  constructor(stats) {
    this.seconds = stats.bucketSeconds;
    this.threshold = stats.failureRateThreshold;
    this.times = stats.buckets.map((bucket) => Date.parse(bucket.start) / 1000);
    this.synced = stats.buckets.map((bucket) => bucket.synced);
    this.failed = stats.buckets.map((bucket) => bucket.failed);
    this.trim();
  }

  bucketOf(seconds) {
    return Math.floor(seconds / this.seconds) * this.seconds;
  }

  rollTo(seconds) {
    // Empty buckets up to the one holding `seconds`: the chart moves on while nothing happens.
    const target = this.bucketOf(seconds);
    let last = this.times.length ? this.times[this.times.length - 1] : target - this.seconds;
    if (target - last > HISTORY_BUCKETS * this.seconds) last = target - this.seconds * HISTORY_BUCKETS;
    while (last < target) {
      last += this.seconds;
      this.times.push(last);
      this.synced.push(0);
      this.failed.push(0);
    }
    this.trim();
  }

  trim() {
    const extra = this.times.length - HISTORY_BUCKETS;
    if (extra > 0) for (const list of [this.times, this.synced, this.failed]) list.splice(0, extra);
  }

  count(event) {
    // An item's outcome (SUCCESS or FAILED) in the bucket of the moment the server logged it.
    const at = Date.parse(event.occurredAt) / 1000;
    this.rollTo(at);
    const index = this.times.indexOf(this.bucketOf(at));
    if (index < 0) return false; // older than the chart
    (event.toStatus === "SUCCESS" ? this.synced : this.failed)[index] += 1;
    return true;
  }

  rates() {
    return this.synced.map((synced, i) => {
      const ended = synced + this.failed[i];
      return ended ? (this.failed[i] / ended) * 100 : null;
    });
  }

  points() {
    return this.synced.filter((synced, i) => synced + this.failed[i] > 0).length;
  }
}

const sum = (list) => list.reduce((total, n) => total + n, 0);
const clock = (seconds) => Times.clock(new Date(seconds * 1000));

function color(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function plot(figure, series, data, yRange) {
  const place = figure.querySelector(".plot");
  const axis = { stroke: color("--muted"), grid: { stroke: color("--line"), width: 1 } };
  return new uPlot(
    {
      width: Math.max(place.clientWidth, 300),
      height: HEIGHT,
      legend: { show: false },
      scales: { x: { time: true }, y: yRange },
      axes: [{ ...axis, values: (u, splits) => splits.map(clock) }, { ...axis, size: 44 }],
      series: [{}, ...series],
    },
    data,
    place,
  );
}

class Charts {
  // Both charts of one company, and what they say in words.
  constructor(stats) {
    this.history = new History(stats);
    this.history.rollTo(Date.now() / 1000);
    this.throughput = document.getElementById("throughput");
    this.failureRate = document.getElementById("failure-rate");
    const stroke = (name, extra = {}) => ({ stroke: color(name), width: 2, points: { show: false }, ...extra });
    this.counts = plot(
      this.throughput,
      [stroke("--ok", { label: "synced" }), stroke("--bad", { label: "failed" })],
      this.countData(),
      { range: (u, min, max) => [0, Math.max(5, max)] },
    );
    this.rates = plot(
      this.failureRate,
      [
        stroke("--bad", {
          label: "failure rate %",
          spanGaps: true,
          points: { show: true, size: 5, fill: color("--bad") }, // a lone minute shows too
        }),
        stroke("--muted", { label: "alert threshold %", dash: [6, 4], width: 1.5 }),
      ],
      this.rateData(),
      { range: [0, 100] },
    );
    this.pending = null;
    this.ticker = setInterval(() => this.tick(), 10000);
    this.resize = () => this.fit();
    window.addEventListener("resize", this.resize);
    this.describe();
  }

  countData() {
    const h = this.history;
    return [h.times, h.synced, h.failed];
  }

  rateData() {
    const h = this.history;
    return [h.times, h.rates(), h.times.map(() => h.threshold * 100)];
  }

  onEvent(event) {
    const outcome = event.itemId && !event.attachmentId &&
      (event.toStatus === "SUCCESS" || event.toStatus === "FAILED");
    if (outcome && this.history.count(event)) this.schedule();
  }

  tick() {
    this.history.rollTo(Date.now() / 1000);
    this.schedule();
  }

  schedule() {
    // At most one redraw a half second, however fast events come.
    if (this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = null;
      this.draw();
    }, 500);
  }

  draw() {
    this.counts.setData(this.countData());
    this.rates.setData(this.rateData());
    this.describe();
  }

  fit() {
    for (const [chart, figure] of [[this.counts, this.throughput], [this.rates, this.failureRate]]) {
      chart.setSize({ width: Math.max(figure.querySelector(".plot").clientWidth, 300), height: HEIGHT });
    }
  }

  describe() {
    const h = this.history;
    const last = h.times.length - 1;
    this.throughput.dataset.points = String(h.points());
    this.throughput.querySelector(".summary").textContent =
      `Last hour: ${sum(h.synced).toLocaleString()} synced, ${sum(h.failed).toLocaleString()} ` +
      `failed. This minute: ${h.synced[last] || 0} synced, ${h.failed[last] || 0} failed.`;
    const rates = h.rates();
    let worst = -1;
    rates.forEach((rate, i) => {
      if (rate !== null && (worst < 0 || rate > rates[worst])) worst = i;
    });
    const threshold = `alert threshold ${Math.round(h.threshold * 100)}%`;
    this.failureRate.querySelector(".summary").textContent = worst < 0
      ? `No item ended in the last hour; ${threshold}.`
      : `Highest ${Math.round(rates[worst])}% at ${clock(h.times[worst])}; ` +
        `this minute ${rates[last] === null ? "none ended" : `${Math.round(rates[last])}%`}; ` +
        `${threshold}.`;
  }

  destroy() {
    clearInterval(this.ticker);
    clearTimeout(this.pending);
    window.removeEventListener("resize", this.resize);
    this.counts.destroy();
    this.rates.destroy();
  }
}

window.Charts = Charts;
