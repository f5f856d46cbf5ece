//! The chart of throughput against connections, written as SVG text.

use std::fmt::Write as _;

use crate::report::thousands;

/// One line of the chart: its name, colour and `(connections, requests/s)` points.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub colour: &'static str,
    /// Drawn dashed (the ceiling).
    pub dashed: bool,
    pub points: Vec<(usize, f64)>,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The decades spanning `low..=high` (both positive): `10^a ..= 10^b`.
fn decades(low: f64, high: f64) -> (i32, i32) {
    let bottom = low.max(1.0).log10().floor() as i32;
    let top = (high.max(10.0).log10().ceil() as i32).max(bottom + 1);
    (bottom, top)
}

/// The chart; connections on a log₂ axis, requests/s on a log₁₀ one (the ceiling is often
/// ten times the rest).
pub fn chart(title: &str, subtitle: &str, series: &[Series]) -> String {
    let mut connections: Vec<usize> = series
        .iter()
        .flat_map(|line| line.points.iter().map(|(c, _)| *c))
        .collect();
    connections.sort_unstable();
    connections.dedup();
    let values = || {
        series
            .iter()
            .flat_map(|line| line.points.iter().map(|(_, value)| *value))
    };
    let (bottom, top) = decades(
        values().fold(f64::INFINITY, f64::min),
        values().fold(0.0, f64::max),
    );
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let (low, high) = match (connections.first(), connections.last()) {
        (Some(&low), Some(&high)) if high > low => ((low as f64).log2(), (high as f64).log2()),
        (Some(&only), _) => ((only as f64).log2() - 1.0, (only as f64).log2() + 1.0),
        _ => (0.0, 8.0),
    };
    let x = |c: usize| LEFT + ((c as f64).log2() - low) / (high - low) * plot_width;
    let y = |value: f64| {
        let share = (value.max(1.0).log10() - f64::from(bottom)) / f64::from(top - bottom);
        TOP + plot_height - share.clamp(0.0, 1.0) * plot_height
    };

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="22" font-size="16" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="40" fill="#555">{}</text>"##,
        escape(subtitle)
    );
    // Horizontal gridlines at 1, 2 and 5 of each decade, labelled.
    for decade in bottom..=top {
        for factor in [1.0, 2.0, 5.0] {
            let value = factor * 10f64.powi(decade);
            if decade == top && factor > 1.0 {
                break;
            }
            let at = y(value);
            let colour = if factor > 1.5 { "#eee" } else { "#ccc" };
            let _ = writeln!(
                svg,
                r#"<line x1="{LEFT}" y1="{at:.1}" x2="{:.1}" y2="{at:.1}" stroke="{colour}"/>"#,
                LEFT + plot_width
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 8.0,
                at + 4.0,
                thousands(value)
            );
        }
    }
    // Vertical ticks at each connection count.
    for &c in &connections {
        let at = x(c);
        let _ = writeln!(
            svg,
            r##"<line x1="{at:.1}" y1="{TOP}" x2="{at:.1}" y2="{:.1}" stroke="#eee"/>"##,
            TOP + plot_height
        );
        let _ = writeln!(
            svg,
            r#"<text x="{at:.1}" y="{:.1}" text-anchor="middle">{c}</text>"#,
            TOP + plot_height + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_width}" height="{plot_height}" fill="none" stroke="#888"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">connections (log scale)</text>"#,
        LEFT + plot_width / 2.0,
        HEIGHT - 18.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">requests/s (log scale)</text>"#,
        TOP + plot_height / 2.0
    );
    // The lines, their points and the legend.
    for (index, line) in series.iter().enumerate() {
        let mut points = line.points.clone();
        points.sort_by_key(|(c, _)| *c);
        let path: Vec<String> = points
            .iter()
            .map(|(c, value)| format!("{:.1},{:.1}", x(*c), y(*value)))
            .collect();
        let dash = if line.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            path.join(" "),
            line.colour
        );
        // Labels above the points, below them for every other line, so neighbours do not meet.
        let below = index % 2 == 0 && index > 0;
        let (first, last) = (
            points.first().map(|(c, _)| *c),
            points.last().map(|(c, _)| *c),
        );
        for (c, value) in &points {
            // The end points' labels lean inwards, off the axes.
            let (label_x, anchor) = if Some(*c) == first && first != last {
                (x(*c) + 4.0, "start")
            } else if Some(*c) == last && first != last {
                (x(*c) - 4.0, "end")
            } else {
                (x(*c), "middle")
            };
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{}: {} req/s at {c}</title></circle>"#,
                x(*c),
                y(*value),
                line.colour,
                escape(&line.name),
                thousands(*value)
            );
            let _ = writeln!(
                svg,
                r#"<text x="{label_x:.1}" y="{:.1}" font-size="10" fill="{}" text-anchor="{anchor}">{}</text>"#,
                if below {
                    y(*value) + 16.0
                } else {
                    y(*value) - 8.0
                },
                line.colour,
                thousands(*value)
            );
        }
        let legend_y = TOP + 10.0 + index as f64 * 22.0;
        let legend_x = LEFT + plot_width + 16.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{legend_x:.1}" y1="{legend_y:.1}" x2="{:.1}" y2="{legend_y:.1}" stroke="{}" stroke-width="2"{dash}/>"#,
            legend_x + 24.0,
            line.colour
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            legend_x + 30.0,
            legend_y + 4.0,
            escape(&line.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decades_span_the_values() {
        assert_eq!(decades(210.0, 71_000.0), (2, 5));
        assert_eq!(decades(1_000.0, 10_000.0), (3, 4));
        assert_eq!(decades(5.0, 5.0), (0, 1));
    }

    #[test]
    fn a_chart_is_one_svg_element() {
        let svg = chart(
            "t",
            "s <&>",
            &[Series {
                name: "a".to_owned(),
                colour: "#000",
                dashed: false,
                points: vec![(1, 10.0), (4, 30.0), (16, 20.0)],
            }],
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("s &lt;&amp;&gt;"));
        assert_eq!(svg.matches("<circle").count(), 3);
    }
}
