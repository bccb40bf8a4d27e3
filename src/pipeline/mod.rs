//! The continuous-improvement loop: composes the domain modules into steps with recorded outcomes.
