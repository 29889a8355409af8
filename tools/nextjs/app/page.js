import Image from "next/image";
import Steps from "./steps";

export default function Home() {
  return (
    <main>
      <h1 id="pagina">Início</h1>
      <Image id="logo" src="/logo.png" alt="logo" width={64} height={64} priority />
      <Steps page="home" />
    </main>
  );
}
