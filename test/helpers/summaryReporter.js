// Prints one plain closing line, "Tests: N passed, N failed", which CI systems read the same way
// whatever the runner. It is written at process exit so that it comes after jest's own summary
// (stderr to a pipe or file is synchronous on Linux, so the write is not lost).
class SummaryReporter {
  onRunComplete(_contexts, results) {
    const failed = results.numFailedTests + results.numRuntimeErrorTestSuites;
    const skipped = results.numPendingTests + results.numTodoTests;
    const line = `Tests: ${results.numPassedTests} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`;
    process.once('exit', () => process.stderr.write(`\n${line}\n`));
  }
}
module.exports = SummaryReporter;
