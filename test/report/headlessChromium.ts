// The browser tests' Chromium: headless, no sandbox, no GPU, no background traffic (so a test that
// forbids network requests sees only the page's own).
import type { Browser } from 'playwright-core';

export async function launchHeadlessChromium(executablePath: string): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath, headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'] });
}
