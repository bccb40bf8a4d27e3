//! Publishing to GitHub: check runs with annotations, PR comments (octocrab).
