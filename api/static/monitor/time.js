// One way of writing times on the whole page, the reader's locale's (12- or 24-hour as it
// has it): the charts' axes, their summaries, the feed and the tables.
const CLOCK = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const CLOCK_SECONDS = new Intl.DateTimeFormat(undefined, {
  hour: "numeric",
  minute: "2-digit",
  second: "2-digit",
});
const WHEN = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "numeric",
  minute: "2-digit",
});

window.Times = {
  clock: (date) => CLOCK.format(date), // 6:40 AM, or 06:40
  clockSeconds: (date) => CLOCK_SECONDS.format(date),
  when: (date) => WHEN.format(date), // Dec 7, 6:40 AM
};
