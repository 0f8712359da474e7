#!/usr/bin/env node
// The `deepalign` command (package.json "bin", so `npx deepalign` works from the repository): runs
// cli/main.ts through tsx's loader, so the TypeScript CLI needs no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../cli/main.ts');
process.exit(await main(process.argv.slice(2)));
