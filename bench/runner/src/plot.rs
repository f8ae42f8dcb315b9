//! The picture `make bench-scale` draws: request latency over time across a run of publishes,
//! one panel per build, stacked on one time axis so a reader sees where a stall is and where
//! it is not.

use std::path::Path;

use plotters::prelude::*;

/// One panel: a build's requests and the moments it installed.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    /// (seconds since the panel's first publish, latency in ms) of the requests drawn.
    pub requests: Vec<(f64, f64)>,
    /// Install windows, seconds since the same origin: (from, to) of each worker's install.
    pub installs: Vec<(f64, f64)>,
}

/// Latency below this is drawn at it: the y axis is logarithmic.
const FLOOR_MS: f64 = 0.05;

/// Writes the panels as one SVG, `width` × 300 px per panel, with a shared logarithmic
/// latency axis (so 0.5 ms and 500 ms are both readable) and each panel's install windows
/// shaded.
pub fn latency_svg(path: &Path, panels: &[Panel], width: u32) -> Result<(), String> {
    let height = 300 * u32::try_from(panels.len().max(1)).unwrap_or(1);
    let root = SVGBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|err| err.to_string())?;
    let end = panels
        .iter()
        .flat_map(|p| p.requests.iter().map(|r| r.0))
        .fold(1.0_f64, f64::max);
    let top = panels
        .iter()
        .flat_map(|p| p.requests.iter().map(|r| r.1))
        .fold(1.0_f64, f64::max)
        * 2.0;
    for (panel, area) in panels
        .iter()
        .zip(root.split_evenly((panels.len().max(1), 1)))
    {
        draw_panel(&area, panel, end, top)?;
    }
    root.present().map_err(|err| err.to_string())
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    panel: &Panel,
    end: f64,
    top: f64,
) -> Result<(), String> {
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end, (FLOOR_MS..top).log_scale())
        .map_err(|err| err.to_string())?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first measured publish")
        .y_desc("request latency (ms, log)")
        .draw()
        .map_err(|err| err.to_string())?;
    let shade = RGBColor(255, 165, 0).mix(0.25).filled();
    chart
        .draw_series(panel.installs.iter().map(|(from, to)| {
            // A window shorter than a pixel still shows.
            let to = to.max(from + end / 2000.0);
            Rectangle::new([(*from, FLOOR_MS), (to, top)], shade)
        }))
        .map_err(|err| err.to_string())?
        .label("a worker installing")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], shade));
    let dot = BLUE.mix(0.5).filled();
    chart
        .draw_series(
            panel
                .requests
                .iter()
                .map(|(at, ms)| Circle::new((*at, ms.max(FLOOR_MS)), 1, dot)),
        )
        .map_err(|err| err.to_string())?
        .label("slowest request of 50 ms")
        .legend(move |(x, y)| Circle::new((x + 5, y), 3, dot));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_both_panels_and_their_points() {
        let dir = std::env::temp_dir().join(format!("plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("latency.svg");
        let panels = [
            Panel {
                title: "JSON".into(),
                requests: vec![(0.1, 0.4), (1.0, 600.0), (2.0, 0.5)],
                installs: vec![(0.5, 1.1)],
            },
            Panel {
                title: "index".into(),
                requests: vec![(0.1, 0.4), (1.0, 0.01)],
                installs: vec![(0.99, 1.0)],
            },
        ];
        latency_svg(&path, &panels, 800).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(
            svg.contains("\nJSON\n") && svg.contains("\nindex\n"),
            "both titles"
        );
        assert_eq!(
            svg.matches("<circle").count(),
            5 + 2,
            "points plus legend marks"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
