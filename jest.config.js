/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022' } }],
    // jose ships only ES modules; Node 20 can require() them, jest's module runtime cannot.
    '/node_modules/jose/.+\\.js$': ['@swc/jest', { jsc: { target: 'es2022' }, module: { type: 'commonjs' } }],
  },
  transformIgnorePatterns: ['/node_modules/(?!jose/)'],
  globalSetup: '<rootDir>/test/helpers/globalSetup.ts',
  globalTeardown: '<rootDir>/test/helpers/globalTeardown.ts',
  // The suite-wide secret canary: every log line, HTTP answer and process output is checked.
  setupFilesAfterEnv: ['<rootDir>/test/helpers/canarySetup.ts'],
  // Two cores: one worker per core; each test file gets its own database cloned from a template.
  maxWorkers: 2,
  // A guard against hangs, not a measure of speed: a starved machine may take many times longer.
  testTimeout: 300_000,
  reporters: ['default', '<rootDir>/test/helpers/summaryReporter.js'],
};
