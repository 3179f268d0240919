// `vireo demo`: boots the built-in tiny guest and prints what it says.
#pragma once

namespace vireo::cli {

/// Runs the demo guest; returns the process exit status.
int run_demo(bool quiet);

}  // namespace vireo::cli
