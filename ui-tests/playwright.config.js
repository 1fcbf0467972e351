/**
 * Playwright configuration for nbflow's JupyterLab UI tests, on top of Galata's base config.
 *
 * The browser is Debian's Chromium (`bash setup.sh` installs it); Playwright downloads none.
 * `CHROMIUM` overrides its path.
 */
const baseConfig = require('@jupyterlab/galata/lib/playwright-config');

module.exports = {
  ...baseConfig,
  // Runs take 10-30 s the first time (a Dask LocalCluster starts in the kernel and in `nbflow
  // run`); the scenario test does several.
  timeout: 240 * 1000,
  expect: {
    timeout: 60 * 1000,
    toHaveScreenshot: { maxDiffPixelRatio: 0.01, animations: 'disabled', caret: 'hide' }
  },
  // One JupyterLab server, one machine of 2 cores: one test at a time.
  testDir: './tests',
  workers: 1,
  fullyParallel: false,
  retries: 0,
  forbidOnly: !!process.env.CI,
  reporter: [
    ['list'],
    ['html', { open: 'never', outputFolder: 'playwright-report' }]
  ],
  // Screenshots are named without the platform, so they are the same file on every Linux box
  // with Debian's Chromium.
  snapshotPathTemplate: '{testDir}/{testFileName}-snapshots/{arg}{ext}',
  use: {
    ...baseConfig.use,
    viewport: { width: 1280, height: 800 },
    video: 'off',
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
    launchOptions: {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium'
    }
  },
  webServer: {
    // The server's log goes to jupyter-server.log (run.sh prints its tail when a test fails).
    command:
      'jupyter lab --config jupyter_server_test_config.py --allow-root > jupyter-server.log 2>&1',
    url: 'http://localhost:8888/lab',
    timeout: 180 * 1000,
    reuseExistingServer: !process.env.CI,
    // Stop it with SIGTERM, so Jupyter shuts its kernels (and their Dask clusters) down.
    gracefulShutdown: { signal: 'SIGTERM', timeout: 30 * 1000 }
  }
};
