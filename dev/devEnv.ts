/** The environment `npm start` runs the worker with, kept under .data/ for `npm run cli`. */
export const DEV_ENV_FILE = 'dev-env.json';
