export { createComponents } from "./index";
