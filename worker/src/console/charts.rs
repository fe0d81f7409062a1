//! Horizontal bar charts as inline SVG: drawn on the server, so a chart
//! needs no script and no request of its own.

use maud::{html, Markup};

pub struct Bar {
    pub label: String,
    pub value: f64,
    /// Shown at the bar's end (the value with its unit).
    pub shown: String,
    /// `good`, `bad`, `pending` or `neutral` (the stylesheet's colours).
    pub tone: &'static str,
}

const WIDTH: f64 = 560.0;
const LABEL: f64 = 210.0;
const ROW: f64 = 26.0;
const BAR: f64 = 18.0;

/// One bar per row, scaled to the largest value; `title` is what a screen
/// reader says of the chart.
pub fn bars(title: &str, rows: &[Bar]) -> Markup {
    let largest = rows.iter().map(|row| row.value).fold(0.0_f64, f64::max);
    let room = WIDTH - LABEL - 90.0;
    let height = ROW * rows.len().max(1) as f64;
    html! {
        svg.chart role="img" aria-label=(title) viewBox={ "0 0 " (WIDTH) " " (height) }
            width=(WIDTH) height=(height) xmlns="http://www.w3.org/2000/svg" {
            title { (title) }
            @if rows.is_empty() {
                text x="0" y="17" { "Nothing in this window." }
            }
            @for (index, row) in rows.iter().enumerate() {
                @let y = index as f64 * ROW;
                @let length = if largest > 0.0 { (row.value / largest * room).max(1.0) } else { 1.0 };
                text x="0" y=(y + 14.0) { (truncate(&row.label, 34)) }
                rect.track x=(LABEL) y=(y + 2.0) width=(room) height=(BAR) rx="3" {}
                rect class=(row.tone) x=(LABEL) y=(y + 2.0) width=(format!("{length:.1}")) height=(BAR) rx="3" {}
                text x=(LABEL + length + 6.0) y=(y + 15.0) { (row.shown) }
            }
        }
    }
}

fn truncate(label: &str, at: usize) -> String {
    if label.chars().count() <= at {
        label.to_owned()
    } else {
        let kept: String = label.chars().take(at - 1).collect();
        format!("{kept}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_escape_labels() {
        let svg = bars(
            "mix",
            &[
                Bar {
                    label: "delivered".into(),
                    value: 300.0,
                    shown: "300".into(),
                    tone: "good",
                },
                Bar {
                    label: "<failed>".into(),
                    value: 30.0,
                    shown: "30".into(),
                    tone: "bad",
                },
            ],
        )
        .into_string();
        assert!(svg.contains(r#"width="260.0""#), "{svg}");
        assert!(svg.contains(r#"width="26.0""#), "{svg}");
        assert!(svg.contains("&lt;failed&gt;"), "{svg}");
        assert!(bars("empty", &[])
            .into_string()
            .contains("Nothing in this window."));
    }
}
