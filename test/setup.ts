// tsyringe needs the Reflect metadata polyfill loaded before any decorated class is evaluated.
import 'reflect-metadata';
