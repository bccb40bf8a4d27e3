//! Rendering results for people: Markdown summaries, HTML reports, JUnit XML.
