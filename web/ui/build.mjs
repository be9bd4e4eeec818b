// Bundles src/main.ts into dist/app.js (one ES module, minified) and copies the page and its
// styles. The output is committed and embedded in the ehash binary; .ci/run rebuilds it and fails
// when the committed copy differs.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';

mkdirSync('dist', { recursive: true });
await build({
  entryPoints: ['src/main.ts'],
  bundle: true,
  format: 'esm',
  target: ['es2022'],
  minify: true,
  legalComments: 'none',
  outfile: 'dist/app.js',
  logLevel: 'warning',
});
copyFileSync('src/index.html', 'dist/index.html');
copyFileSync('src/app.css', 'dist/app.css');
