//! A small SVG writer for the report's charts: text escaped for HTML and
//! XML, a linear scale with round ticks, and the few elements the charts
//! use (rectangles, lines, text, groups with a tooltip).
//!
//! Written here rather than taken from a plotting crate: the report draws
//! only bars and ranges, which take a page of code, while a crate brings a
//! font stack and layout of its own to strip out (plotters' SVG backend
//! measures text with font files, which a self-contained page cannot
//! reference), and a dependency to keep. The SVG is inline in the page,
//! styled by its CSS classes, so the dark scheme and print apply to it too.

use std::fmt::Write as _;

/// `s` safe in HTML or SVG text and in a quoted attribute: `&`, `<`, `>`,
/// `"` and `'` as entities, and C0 controls (other than tab and newline)
/// as U+FFFD, which XML does not allow even as references. Every text
/// that comes from records goes through here.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// `s` cut to `max` characters, the cut marked with `…` (labels beside a
/// bar have a fixed width; the tooltip and the table give the whole text).
pub(super) fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A linear scale from `0..=max` (a round number at or above the largest
/// value) onto `0..=len` pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Scale {
    pub(super) max: f64,
    pub(super) step: f64,
    len: f64,
}

impl Scale {
    /// A scale for values up to `largest` over `len` pixels, with about
    /// `ticks` ticks. Nothing to show (zero, negative, not finite) gives
    /// `0..=1`, so an empty chart still has an axis and no division by
    /// zero.
    pub(super) fn new(largest: f64, len: f64, ticks: usize) -> Scale {
        Scale::with_step(largest, len, ticks, 0.0)
    }

    /// A scale of counts: as [`Scale::new`], with whole ticks (no tick at
    /// half a job).
    pub(super) fn counts(largest: u64, len: f64, ticks: usize) -> Scale {
        Scale::with_step(largest as f64, len, ticks, 1.0)
    }

    fn with_step(largest: f64, len: f64, ticks: usize, least: f64) -> Scale {
        let largest = if largest.is_finite() && largest > 0.0 {
            largest
        } else {
            1.0
        };
        let step = nice_step(largest / ticks.max(1) as f64).max(least);
        let max = (largest / step).ceil() * step;
        Scale { max, step, len }
    }

    /// Pixels for `v`, within `0..=len` (a value past the scale, which
    /// `new` never makes, is drawn at its end rather than off the chart).
    pub(super) fn px(&self, v: f64) -> f64 {
        if !v.is_finite() || v <= 0.0 {
            return 0.0;
        }
        (v / self.max).min(1.0) * self.len
    }

    /// The tick values `0, step, …, max`.
    pub(super) fn ticks(&self) -> Vec<f64> {
        let n = (self.max / self.step).round() as usize;
        (0..=n).map(|i| i as f64 * self.step).collect()
    }
}

/// The round step (1, 2 or 5 times a power of ten) at or above `raw`.
fn nice_step(raw: f64) -> f64 {
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag)
}

/// A tick's label: as few decimals as its step needs.
pub(super) fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    if decimals == 0 {
        super::page::thousands(v.round() as u64)
    } else {
        format!("{v:.decimals$}")
    }
}

/// An SVG element being written: a viewBox of `width` × `height` user
/// units, scaled by the page to its container's width.
pub(super) struct Svg {
    out: String,
}

impl Svg {
    /// `label` names the chart for screen readers.
    pub(super) fn new(width: f64, height: f64, label: &str) -> Svg {
        let mut out = String::new();
        let _ = write!(
            out,
            "<svg class=\"chart\" viewBox=\"0 0 {width} {height}\" role=\"img\" \
             aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
            esc(label)
        );
        Svg { out }
    }

    /// A group whose tooltip (`<title>`, shown on hover) is `title`; the
    /// elements added until [`Svg::end`] are in it.
    pub(super) fn group(&mut self, title: &str) {
        let _ = write!(self.out, "<g><title>{}</title>", esc(title));
    }

    pub(super) fn end(&mut self) {
        self.out.push_str("</g>");
    }

    pub(super) fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, class: &str) {
        let _ = write!(
            self.out,
            "<rect class=\"{class}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
            r(x),
            r(y),
            r(w.max(0.0)),
            r(h.max(0.0))
        );
    }

    pub(super) fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), class: &str) {
        let _ = write!(
            self.out,
            "<line class=\"{class}\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>",
            r(x1),
            r(y1),
            r(x2),
            r(y2)
        );
    }

    /// A diamond of half-width `s` centred on `(x, y)` (the max marker).
    pub(super) fn diamond(&mut self, x: f64, y: f64, s: f64, class: &str) {
        let _ = write!(
            self.out,
            "<path class=\"{class}\" d=\"M{} {}L{} {}L{} {}L{} {}Z\"/>",
            r(x),
            r(y - s),
            r(x + s),
            r(y),
            r(x),
            r(y + s),
            r(x - s),
            r(y)
        );
    }

    /// Text at `(x, y)` (its baseline), anchored `start`, `middle` or
    /// `end`; `text` is escaped here.
    pub(super) fn text(&mut self, x: f64, y: f64, anchor: &str, class: &str, text: &str) {
        let _ = write!(
            self.out,
            "<text class=\"{class}\" x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
            r(x),
            r(y),
            esc(text)
        );
    }

    pub(super) fn finish(mut self) -> String {
        self.out.push_str("</svg>");
        self.out
    }
}

/// A coordinate with at most two decimals (a smaller page, the same
/// drawing).
fn r(v: f64) -> String {
    let v = if v.is_finite() { v } else { 0.0 };
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup_and_no_control_characters() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(
            esc("a\u{0}b\u{1b}c\td\u{7f}é"),
            "a\u{fffd}b\u{fffd}c\td\u{fffd}é"
        );
        let mut svg = Svg::new(10.0, 10.0, "<chart>");
        svg.group("</title><script>x</script>");
        svg.text(1.0, 2.0, "start", "label", "<b>&amp;</b>");
        svg.end();
        let out = svg.finish();
        assert!(!out.contains("<script"), "{out}");
        assert!(!out.contains("<b>"), "{out}");
        assert!(out.contains("&lt;/title&gt;&lt;script&gt;"), "{out}");
        assert!(out.contains("&lt;b&gt;&amp;amp;&lt;/b&gt;"), "{out}");
        assert!(out.contains("aria-label=\"&lt;chart&gt;\""), "{out}");
    }

    #[test]
    fn scales_end_on_a_round_number_with_round_ticks() {
        let s = Scale::new(87.0, 200.0, 5);
        assert_eq!((s.max, s.step), (100.0, 20.0));
        assert_eq!(s.ticks(), [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(s.px(50.0), 100.0);
        assert_eq!(s.px(100.0), 200.0);
        let s = Scale::new(0.37, 100.0, 4);
        assert_eq!((s.max, s.step), (0.4, 0.1));
        assert_eq!(tick_label(0.30000000000000004, s.step), "0.3");
        let s = Scale::new(1234.0, 100.0, 5);
        assert_eq!((s.max, s.step), (1500.0, 500.0));
        assert_eq!(tick_label(1500.0, s.step), "1,500");
        // A value exactly on a step keeps it as the end.
        assert_eq!(Scale::new(40.0, 10.0, 4).max, 40.0);
        // Counts tick in whole jobs.
        let s = Scale::counts(2, 100.0, 5);
        assert_eq!(s.ticks(), [0.0, 1.0, 2.0]);
        assert_eq!(tick_label(1.0, s.step), "1");
        assert_eq!(Scale::counts(0, 100.0, 5).ticks(), [0.0, 1.0]);
    }

    #[test]
    fn empty_and_odd_data_still_make_an_axis() {
        for largest in [0.0, -3.0, f64::NAN, f64::INFINITY] {
            let s = Scale::new(largest, 300.0, 5);
            assert!(s.max > 0.0 && s.max.is_finite(), "{largest}: {s:?}");
            assert_eq!(s.ticks().first(), Some(&0.0));
            assert_eq!(s.px(0.0), 0.0);
            assert_eq!(s.px(f64::NAN), 0.0);
        }
        // One bucket: its value is the top of the scale or under it.
        let s = Scale::new(1.0, 300.0, 5);
        assert!(s.px(1.0) <= 300.0 && s.px(1.0) > 0.0);
        assert_eq!(s.px(1e9), 300.0);
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("a rather long error type", 10), "a rather …");
    }

    #[test]
    fn coordinates_are_short_and_finite() {
        let mut svg = Svg::new(100.0, 50.0, "c");
        svg.rect(1.0 / 3.0, f64::NAN, -5.0, 2.5, "ok");
        let out = svg.finish();
        assert!(
            out.contains(r#"<rect class="ok" x="0.33" y="0" width="0" height="2.5"/>"#),
            "{out}"
        );
    }
}
